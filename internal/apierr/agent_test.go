package apierr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"connectrpc.com/connect"
)

func TestFromAgent(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		status  int
		code    string
		message string
	}{
		{"not found", connect.NewError(connect.CodeNotFound, errors.New("process 7 not found")), 404, "not_found", "process 7 not found"},
		{"invalid argument", connect.NewError(connect.CodeInvalidArgument, errors.New("bad signal")), 400, "invalid_request", "bad signal"},
		{"already exists", connect.NewError(connect.CodeAlreadyExists, errors.New("tag in use")), 409, "conflict", "tag in use"},
		{"failed precondition", connect.NewError(connect.CodeFailedPrecondition, errors.New("not running")), 409, "conflict", "not running"},
		{"permission denied", connect.NewError(connect.CodePermissionDenied, errors.New("no access")), 403, "forbidden", "no access"},
		{"deadline exceeded", connect.NewError(connect.CodeDeadlineExceeded, errors.New("exec timed out")), 504, "timeout", "exec timed out"},
		{"resource exhausted", connect.NewError(connect.CodeResourceExhausted, errors.New("disk full")), 507, "insufficient_storage", "disk full"},
		{"unavailable", connect.NewError(connect.CodeUnavailable, errors.New("dial tcp 10.0.0.1:1: refused")), 503, "host_unavailable", "sandbox host is not reachable"},
		{"unimplemented", connect.NewError(connect.CodeUnimplemented, errors.New("no pty")), 501, "agent_error", "no pty"},
		{"internal", connect.NewError(connect.CodeInternal, errors.New("runsc failed")), 502, "agent_error", "runsc failed"},
		{"canceled", connect.NewError(connect.CodeCanceled, errors.New("canceled")), 502, "agent_error", "canceled"},
		{"wrapped connect error", fmt.Errorf("exec: %w", connect.NewError(connect.CodeNotFound, errors.New("gone"))), 404, "not_found", "gone"},
		{"empty message", connect.NewError(connect.CodeInternal, errors.New("")), 502, "agent_error", "host agent error"},
		{"plain error", errors.New("weird"), 502, "agent_error", "weird"},
		{"context deadline", context.DeadlineExceeded, 504, "timeout", "context deadline exceeded"},
		{"api error passes through", InvalidState("sandbox is not running"), 409, "invalid_state", "sandbox is not running"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := FromAgent(tt.err)
			if e.Status != tt.status || e.Code != tt.code || e.Message != tt.message {
				t.Fatalf("got %d %s %q, want %d %s %q", e.Status, e.Code, e.Message, tt.status, tt.code, tt.message)
			}
			if !errors.Is(e, tt.err) && e != tt.err {
				t.Fatal("cause lost")
			}
		})
	}
	if FromAgent(nil) != nil {
		t.Fatal("FromAgent(nil) != nil")
	}
}
