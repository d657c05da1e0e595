package apierr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestConstructors(t *testing.T) {
	tests := []struct {
		name   string
		err    *Error
		status int
		code   string
	}{
		{"invalid_request", InvalidRequest("m"), 400, "invalid_request"},
		{"invalid_requestf", InvalidRequestf("bad %s", "m"), 400, "invalid_request"},
		{"invalid_archive", InvalidArchive("m"), 400, "invalid_archive"},
		{"invalid_token", InvalidToken("m"), 400, "invalid_token"},
		{"already_activated", AlreadyActivated("m"), 400, "already_activated"},
		{"last_login_method", LastLoginMethod("m"), 400, "last_login_method"},
		{"unauthorized", Unauthorized("m"), 401, "unauthorized"},
		{"wrong_password", WrongPassword("m"), 401, "wrong_password"},
		{"forbidden", Forbidden("m"), 403, "forbidden"},
		{"account_not_activated", AccountNotActivated("m"), 403, "account_not_activated"},
		{"account_disabled", AccountDisabled("m"), 403, "account_disabled"},
		{"account_deactivated", AccountDeactivated("m"), 403, "account_deactivated"},
		{"no_team", NoTeam("m"), 403, "no_team"},
		{"not_found", NotFound("m"), 404, "not_found"},
		{"method_not_allowed", MethodNotAllowed("m"), 405, "method_not_allowed"},
		{"conflict", Conflict("m"), 409, "conflict"},
		{"invalid_state", InvalidState("m"), 409, "invalid_state"},
		{"email_taken", EmailTaken("m"), 409, "email_taken"},
		{"signup_cooldown", SignupCooldown("m"), 409, "signup_cooldown"},
		{"owns_team_with_members", OwnsTeamWithMembers("m"), 409, "owns_team_with_members"},
		{"name_reserved", NameReserved("m"), 409, "name_reserved"},
		{"template_name_taken", TemplateNameTaken("m"), 409, "template_name_taken"},
		{"has_active_capsules", HasActiveCapsules("m", []string{"cl-1"}), 409, "has_active_capsules"},
		{"too_large", TooLarge("m"), 413, "too_large"},
		{"build_error", BuildError("m"), 500, "build_error"},
		{"agent_error", AgentError("m"), 502, "agent_error"},
		{"agent_unimplemented", AgentUnimplemented("m"), 501, "agent_error"},
		{"host_unavailable", HostUnavailable("m"), 503, "host_unavailable"},
		{"no_capacity", NoCapacity("m"), 503, "no_capacity"},
		{"timeout", Timeout("m"), 504, "timeout"},
		{"insufficient_storage", InsufficientStorage("m"), 507, "insufficient_storage"},
		{"new", New(418, "teapot", "m"), 418, "teapot"},
		{"newf", Newf(418, "teapot", "%s", "m"), 418, "teapot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err.Status != tt.status || tt.err.Code != tt.code {
				t.Fatalf("got %d %s, want %d %s", tt.err.Status, tt.err.Code, tt.status, tt.code)
			}
			if tt.err.Message == "" || !strings.Contains(tt.err.Message, "m") {
				t.Fatalf("message = %q", tt.err.Message)
			}
		})
	}
}

func TestInternal(t *testing.T) {
	cause := errors.New("db exploded")
	e := Internal(cause)
	if e.Status != 500 || e.Code != CodeInternalError || e.Message != "internal server error" {
		t.Fatalf("Internal = %+v", e)
	}
	if !errors.Is(e, cause) {
		t.Fatal("cause not reachable through Unwrap")
	}
	if !strings.Contains(e.Error(), "db exploded") {
		t.Fatalf("Error() = %q", e.Error())
	}
	if got := NotFound("x").Error(); got != "not_found (404): x" {
		t.Fatalf("Error() = %q", got)
	}
}

func TestWithCause(t *testing.T) {
	base := NotFound("sandbox not found")
	cause := errors.New("no rows")
	c := base.WithCause(cause)
	if base.Err != nil {
		t.Fatal("WithCause modified the receiver")
	}
	if !errors.Is(c, cause) || c.Code != base.Code || c.Message != base.Message {
		t.Fatalf("WithCause = %+v", c)
	}
}

func TestMarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"plain", NotFound("sandbox not found"), `{"error":{"code":"not_found","message":"sandbox not found"}}`},
		{"mirrored ids", HasActiveCapsules("host has active capsules", []string{"cl-a", "cl-b"}),
			`{"error":{"capsule_ids":["cl-a","cl-b"],"code":"has_active_capsules","message":"host has active capsules","sandbox_ids":["cl-a","cl-b"]}}`},
		{"nil ids become empty arrays", HasActiveCapsules("m", nil),
			`{"error":{"capsule_ids":[],"code":"has_active_capsules","message":"m","sandbox_ids":[]}}`},
		{"fields cannot override code", &Error{Status: 400, Code: "invalid_request", Message: "m", Fields: map[string]any{"code": "x", "message": "y"}},
			`{"error":{"code":"invalid_request","message":"m"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.err)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}

// captureLog swaps the default slog logger for the duration of the test.
func captureLog(t *testing.T) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })
	return &buf
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		status   int
		code     string
		message  string
		logged   bool
		extraKey string
	}{
		{"api error", Conflict("tag already used"), 409, "conflict", "tag already used", false, ""},
		{"wrapped api error", fmt.Errorf("handler: %w", NotFound("sandbox not found")), 404, "not_found", "sandbox not found", false, ""},
		{"unknown error", errors.New("pq: secret detail"), 500, "internal_error", "internal server error", true, ""},
		{"nil error", nil, 500, "internal_error", "internal server error", true, ""},
		{"max bytes", &http.MaxBytesError{Limit: 1 << 20}, 413, "too_large", "request body exceeds 1 MiB limit", false, ""},
		{"5xx api error is logged", HostUnavailable("sandbox host is not reachable"), 503, "host_unavailable", "sandbox host is not reachable", true, ""},
		{"extra fields", HasActiveCapsules("m", []string{"cl-x"}), 409, "has_active_capsules", "m", false, "sandbox_ids"},
		{"unmarshalable fields fall back", &Error{Status: 409, Code: "conflict", Message: "m", Fields: map[string]any{"bad": make(chan int)}}, 409, "conflict", "m", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logBuf := captureLog(t)
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Length", "12")
			req := httptest.NewRequest(http.MethodPost, "/v1/capsules", nil)
			Write(rec, req, tt.err)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d", rec.Code, tt.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Fatalf("Content-Type = %q", ct)
			}
			if rec.Header().Get("Content-Length") != "" {
				t.Fatal("stale Content-Length kept")
			}
			var body struct {
				Error map[string]any `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Error["code"] != tt.code || body.Error["message"] != tt.message {
				t.Fatalf("body = %s", rec.Body)
			}
			if tt.extraKey != "" && body.Error[tt.extraKey] == nil {
				t.Fatalf("missing %q in %s", tt.extraKey, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "secret detail") {
				t.Fatal("cause leaked to the client")
			}
			logged := logBuf.Len() > 0
			if logged != tt.logged {
				t.Fatalf("logged = %v (%q), want %v", logged, logBuf, tt.logged)
			}
			if tt.logged && !strings.Contains(logBuf.String(), "path=/v1/capsules") {
				t.Fatalf("log lacks the request path: %q", logBuf)
			}
		})
	}
}

func TestWriteNilRequest(t *testing.T) {
	logBuf := captureLog(t)
	rec := httptest.NewRecorder()
	Write(rec, nil, errors.New("boom"))
	if rec.Code != 500 || !strings.Contains(logBuf.String(), "boom") {
		t.Fatalf("status %d, log %q", rec.Code, logBuf)
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{1 << 20, "1 MiB"}, {100 << 20, "100 MiB"}, {64 << 10, "64 KiB"}, {1000, "1000 bytes"}, {(1 << 20) + 1, "1048577 bytes"}, {0, "0 bytes"},
	}
	for _, tt := range tests {
		if got := FormatBytes(tt.n); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestErrorFrame(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		fatal bool
		want  string
	}{
		{"fatal api error", Unauthorized("authentication failed"), true, `{"type":"error","data":"authentication failed","code":"unauthorized","fatal":true}`},
		{"non-fatal", Conflict("x"), false, `{"type":"error","data":"x","code":"conflict"}`},
		{"unknown error is generic", errors.New("secret"), true, `{"type":"error","data":"internal server error","code":"internal_error","fatal":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(ErrorFrame(tt.err, tt.fatal))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}
