package apierr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
)

func TestFromAgent(t *testing.T) {
	const agentError = "host agent error (request req-test)"
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
		{"internal", connect.NewError(connect.CodeInternal, errors.New("runsc failed")), 502, "agent_error", agentError},
		{"unknown", connect.NewError(connect.CodeUnknown, errors.New("runsc failed")), 502, "agent_error", agentError},
		{"canceled", connect.NewError(connect.CodeCanceled, errors.New("canceled")), 502, "agent_error", agentError},
		{"wrapped connect error", fmt.Errorf("exec: %w", connect.NewError(connect.CodeNotFound, errors.New("gone"))), 404, "not_found", "gone"},
		{"empty message", connect.NewError(connect.CodeInternal, errors.New("")), 502, "agent_error", agentError},
		{"plain error", errors.New("weird"), 502, "agent_error", agentError},
		{"context deadline", context.DeadlineExceeded, 504, "timeout", "context deadline exceeded"},
		{"api error passes through", InvalidState("sandbox is not running"), 409, "invalid_state", "sandbox is not running"},
	}
	ctx := WithRequestID(context.Background(), "req-test")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			captureLog(t)
			e := FromAgent(ctx, tt.err)
			if e.Status != tt.status || e.Code != tt.code || e.Message != tt.message {
				t.Fatalf("got %d %s %q, want %d %s %q", e.Status, e.Code, e.Message, tt.status, tt.code, tt.message)
			}
			if !errors.Is(e, tt.err) && e != tt.err {
				t.Fatal("cause lost")
			}
		})
	}
	if FromAgent(ctx, nil) != nil {
		t.Fatal("FromAgent(nil) != nil")
	}
}

// An agent error the API has no kind for is logged under the request id, and the client learns the
// request id but not the agent's text (host paths, runsc output); Write does not log it twice.
func TestFromAgentHidesUnknownErrors(t *testing.T) {
	const detail = "runsc restore: open /var/lib/wrenn/capsules/cl-1/checkpoint.img: no such file"
	for _, err := range []error{
		connect.NewError(connect.CodeInternal, errors.New(detail)),
		connect.NewError(connect.CodeUnknown, errors.New(detail)),
		fmt.Errorf("resume: %w", connect.NewError(connect.CodeDataLoss, errors.New(detail))),
		errors.New(detail),
	} {
		logBuf := captureLog(t)
		req := httptest.NewRequest(http.MethodPost, "/v1/capsules/cl-1/resume", nil)
		req = req.WithContext(WithRequestID(req.Context(), "req-abc123"))
		e := FromAgent(req.Context(), err)
		if e.Status != http.StatusBadGateway || e.Code != CodeAgentError {
			t.Fatalf("%v → %d %s", err, e.Status, e.Code)
		}
		if !strings.Contains(e.Message, "req-abc123") || strings.Contains(e.Message, "/var/lib") {
			t.Fatalf("message %q: want the request id and no host path", e.Message)
		}
		if !errors.Is(e, err) {
			t.Fatal("cause lost")
		}
		log := logBuf.String()
		if !strings.Contains(log, "request_id=req-abc123") || !strings.Contains(log, "/var/lib/wrenn") {
			t.Fatalf("log %q: want the request id and the agent's text", log)
		}

		logBuf.Reset()
		rec := httptest.NewRecorder()
		Write(rec, req, fmt.Errorf("handler: %w", e))
		if rec.Code != http.StatusBadGateway || strings.Contains(rec.Body.String(), "/var/lib") ||
			!strings.Contains(rec.Body.String(), "req-abc123") {
			t.Fatalf("answer %d %s", rec.Code, rec.Body)
		}
		if logBuf.Len() != 0 {
			t.Fatalf("logged twice: %q", logBuf)
		}
	}

	// Background work (no request) still logs; the message is generic.
	logBuf := captureLog(t)
	e := FromAgent(context.Background(), errors.New(detail))
	if e.Message != "host agent error" || !strings.Contains(logBuf.String(), detail) {
		t.Fatalf("message %q, log %q", e.Message, logBuf)
	}
}

func TestAgentNotFound(t *testing.T) {
	for err, want := range map[error]bool{
		nil: false,
		connect.NewError(connect.CodeNotFound, errors.New("sandbox not found")):                    true,
		fmt.Errorf("destroy: %w", connect.NewError(connect.CodeNotFound, errors.New("gone"))):      true,
		connect.NewError(connect.CodeFailedPrecondition, errors.New("sandbox is paused")):          false,
		connect.NewError(connect.CodeInternal, errors.New("template not found in /var/lib/wrenn")): false,
		errors.New("not found"): false,
	} {
		if got := AgentNotFound(err); got != want {
			t.Errorf("AgentNotFound(%v) = %v, want %v", err, got, want)
		}
	}
}

func TestRequestID(t *testing.T) {
	if id := RequestID(context.Background()); id != "" {
		t.Fatalf("RequestID of a background context = %q", id)
	}
	if id := RequestID(WithRequestID(context.Background(), "req-1")); id != "req-1" {
		t.Fatalf("RequestID = %q", id)
	}
}
