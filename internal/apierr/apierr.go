// Package apierr is the control plane's error model (docs/api.md): typed errors carrying an HTTP
// status and a snake_case code, the {"error":{"code","message"}} body, WebSocket error frames, the
// mapping of host-agent RPC errors (docs/api.md) and the request id that errors are logged and quoted under.
package apierr

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// Codes of docs/api.md. Clients branch on these, so they never change.
const (
	CodeInvalidRequest      = "invalid_request"
	CodeInvalidArchive      = "invalid_archive"
	CodeInvalidToken        = "invalid_token"
	CodeAlreadyActivated    = "already_activated"
	CodeLastLoginMethod     = "last_login_method"
	CodeUnauthorized        = "unauthorized"
	CodeWrongPassword       = "wrong_password"
	CodeForbidden           = "forbidden"
	CodeAccountNotActivated = "account_not_activated"
	CodeAccountDisabled     = "account_disabled"
	CodeAccountDeactivated  = "account_deactivated"
	CodeNoTeam              = "no_team"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeConflict            = "conflict"
	CodeInvalidState        = "invalid_state"
	CodeEmailTaken          = "email_taken"
	CodeSignupCooldown      = "signup_cooldown"
	CodeOwnsTeamWithMembers = "owns_team_with_members"
	CodeNameReserved        = "name_reserved"
	CodeTemplateNameTaken   = "template_name_taken"
	CodeHasActiveCapsules   = "has_active_capsules"
	CodeTooLarge            = "too_large"
	CodeRateLimited         = "rate_limited"
	CodeQuotaExceeded       = "quota_exceeded"
	CodeInternalError       = "internal_error"
	CodeBuildError          = "build_error"
	CodeAgentError          = "agent_error"
	CodeHostUnavailable     = "host_unavailable"
	CodeNoCapacity          = "no_capacity"
	CodeTimeout             = "timeout"
	CodeInsufficientStorage = "insufficient_storage"
	CodeInactivityTimeout   = "inactivity_timeout" // WebSocket frames only (docs/api.md)
)

// internalMessage is the only message a 500 internal_error carries; the cause goes to the log.
const internalMessage = "internal server error"

// Error is an API error: the HTTP status, the code of docs/api.md and a message telling the client what to fix.
// Fields, when set, are added inside the "error" object (e.g. capsule_ids of has_active_capsules).
// Err is the underlying cause; it is logged for 5xx answers and never sent.
type Error struct {
	Status  int
	Code    string
	Message string
	Fields  map[string]any
	Err     error

	logged bool // the cause is in the log already (FromAgent): Write does not log it again
	// retryAfter, when positive, is answered in a Retry-After header (whole seconds, rounded up).
	retryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s (%d): %s: %v", e.Code, e.Status, e.Message, e.Err)
	}
	return fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// RetryAfter is how long a rate-limited client should wait (0: no Retry-After), for transports that
// write their own error bodies.
func (e *Error) RetryAfter() time.Duration { return e.retryAfter }

// WithCause returns a copy of e that records err as its cause.
func (e *Error) WithCause(err error) *Error {
	c := *e
	c.Err = err
	c.logged = false
	return &c
}

// MarshalJSON renders the response body {"error":{"code","message",…Fields}}.
func (e *Error) MarshalJSON() ([]byte, error) {
	inner := make(map[string]any, len(e.Fields)+2)
	for k, v := range e.Fields {
		inner[k] = v
	}
	inner["code"] = e.Code
	inner["message"] = e.Message
	return json.Marshal(map[string]any{"error": inner})
}

// New returns an error with an arbitrary status and code; prefer the named constructors.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Newf is New with a formatted message.
func Newf(status int, code, format string, args ...any) *Error {
	return New(status, code, fmt.Sprintf(format, args...))
}

// InvalidRequest is 400 invalid_request: malformed body, missing/invalid field, bad id, bad query value.
func InvalidRequest(msg string) *Error { return New(http.StatusBadRequest, CodeInvalidRequest, msg) }

// InvalidRequestf is InvalidRequest with a formatted message.
func InvalidRequestf(format string, args ...any) *Error {
	return InvalidRequest(fmt.Sprintf(format, args...))
}

// InvalidArchive is 400 invalid_archive: build archive of unknown format or with an unsafe entry.
func InvalidArchive(msg string) *Error { return New(http.StatusBadRequest, CodeInvalidArchive, msg) }

// InvalidToken is 400 invalid_token: activation / password-reset token unknown, used or expired.
func InvalidToken(msg string) *Error { return New(http.StatusBadRequest, CodeInvalidToken, msg) }

// AlreadyActivated is 400 already_activated.
func AlreadyActivated(msg string) *Error {
	return New(http.StatusBadRequest, CodeAlreadyActivated, msg)
}

// LastLoginMethod is 400 last_login_method: unlinking the only way to sign in.
func LastLoginMethod(msg string) *Error {
	return New(http.StatusBadRequest, CodeLastLoginMethod, msg)
}

// Unauthorized is 401 unauthorized: missing/invalid credentials, bad email or password, bad host token.
func Unauthorized(msg string) *Error { return New(http.StatusUnauthorized, CodeUnauthorized, msg) }

// WrongPassword is 401 wrong_password: current password wrong on password change.
func WrongPassword(msg string) *Error {
	return New(http.StatusUnauthorized, CodeWrongPassword, msg)
}

// Forbidden is 403 forbidden: authenticated but not allowed.
func Forbidden(msg string) *Error { return New(http.StatusForbidden, CodeForbidden, msg) }

// AccountNotActivated is 403 account_not_activated: login before activation.
func AccountNotActivated(msg string) *Error {
	return New(http.StatusForbidden, CodeAccountNotActivated, msg)
}

// AccountDisabled is 403 account_disabled: login to a disabled account.
func AccountDisabled(msg string) *Error {
	return New(http.StatusForbidden, CodeAccountDisabled, msg)
}

// AccountDeactivated is 403 account_deactivated: JWT of a user that is no longer active.
func AccountDeactivated(msg string) *Error {
	return New(http.StatusForbidden, CodeAccountDeactivated, msg)
}

// NoTeam is 403 no_team: the caller has no team context.
func NoTeam(msg string) *Error { return New(http.StatusForbidden, CodeNoTeam, msg) }

// NotFound is 404 not_found: absent, or belongs to another team (never 403 across teams).
func NotFound(msg string) *Error { return New(http.StatusNotFound, CodeNotFound, msg) }

// MethodNotAllowed is 405 method_not_allowed: known path, wrong method.
func MethodNotAllowed(msg string) *Error {
	return New(http.StatusMethodNotAllowed, CodeMethodNotAllowed, msg)
}

// Conflict is 409 conflict: already exists, duplicate tag, failed guest precondition.
func Conflict(msg string) *Error { return New(http.StatusConflict, CodeConflict, msg) }

// InvalidState is 409 invalid_state: capsule, process, host or build in the wrong state for the action.
func InvalidState(msg string) *Error { return New(http.StatusConflict, CodeInvalidState, msg) }

// EmailTaken is 409 email_taken.
func EmailTaken(msg string) *Error { return New(http.StatusConflict, CodeEmailTaken, msg) }

// SignupCooldown is 409 signup_cooldown.
func SignupCooldown(msg string) *Error { return New(http.StatusConflict, CodeSignupCooldown, msg) }

// OwnsTeamWithMembers is 409 owns_team_with_members.
func OwnsTeamWithMembers(msg string) *Error {
	return New(http.StatusConflict, CodeOwnsTeamWithMembers, msg)
}

// NameReserved is 409 name_reserved: team template name equals a platform template name.
func NameReserved(msg string) *Error { return New(http.StatusConflict, CodeNameReserved, msg) }

// TemplateNameTaken is 409 template_name_taken.
func TemplateNameTaken(msg string) *Error {
	return New(http.StatusConflict, CodeTemplateNameTaken, msg)
}

// HasActiveCapsules is 409 has_active_capsules with "capsule_ids" and its mirror "sandbox_ids" (docs/api.md).
func HasActiveCapsules(msg string, capsuleIDs []string) *Error {
	if capsuleIDs == nil {
		capsuleIDs = []string{}
	}
	e := New(http.StatusConflict, CodeHasActiveCapsules, msg)
	e.Fields = map[string]any{"capsule_ids": capsuleIDs, "sandbox_ids": capsuleIDs}
	return e
}

// TooLarge is 413 too_large: body or upload over its limit.
func TooLarge(msg string) *Error { return New(http.StatusRequestEntityTooLarge, CodeTooLarge, msg) }

// RateLimited is a 429 rate_limited answered with Retry-After: the client may try again after
// retryAfter.
func RateLimited(msg string, retryAfter time.Duration) *Error {
	e := New(http.StatusTooManyRequests, CodeRateLimited, msg)
	e.retryAfter = retryAfter
	return e
}

// QuotaExceeded is 429 quota_exceeded: the action would take the team over one of its quotas (msg
// names the limit); waiting does not help until the team frees capacity.
func QuotaExceeded(msg string) *Error { return New(http.StatusTooManyRequests, CodeQuotaExceeded, msg) }

// Internal is 500 internal_error with the generic message; cause is logged, never sent.
func Internal(cause error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternalError, Message: internalMessage, Err: cause}
}

// BuildError is 500 build_error: a build could not be queued.
func BuildError(msg string) *Error {
	return New(http.StatusInternalServerError, CodeBuildError, msg)
}

// AgentError is 502 agent_error: the host agent failed (message = the agent's message).
func AgentError(msg string) *Error { return New(http.StatusBadGateway, CodeAgentError, msg) }

// AgentUnimplemented is 501 agent_error: the host agent lacks the operation.
func AgentUnimplemented(msg string) *Error {
	return New(http.StatusNotImplemented, CodeAgentError, msg)
}

// HostUnavailable is 503 host_unavailable: the capsule's host cannot be reached.
func HostUnavailable(msg string) *Error {
	return New(http.StatusServiceUnavailable, CodeHostUnavailable, msg)
}

// NoCapacity is 503 no_capacity: no online host can fit the capsule.
func NoCapacity(msg string) *Error {
	return New(http.StatusServiceUnavailable, CodeNoCapacity, msg)
}

// Timeout is 504 timeout: the operation exceeded its time limit.
func Timeout(msg string) *Error { return New(http.StatusGatewayTimeout, CodeTimeout, msg) }

// InsufficientStorage is 507 insufficient_storage: the capsule's disk is full.
func InsufficientStorage(msg string) *Error {
	return New(http.StatusInsufficientStorage, CodeInsufficientStorage, msg)
}

// From returns err as an *Error: itself (or the first *Error in its chain); a request body over an
// http.MaxBytesReader limit becomes 413 too_large; anything else becomes 500 internal_error with err as
// its cause.
func From(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return TooLarge(fmt.Sprintf("request body exceeds %s limit", FormatBytes(mb.Limit)))
	}
	return Internal(err)
}

// Write sends err as docs/api.md error body. Errors that are not *Error (see From) become 500
// internal_error with a generic message. Every 5xx is logged with its cause and, when r is not nil,
// the request's method, path and request id (unless FromAgent logged it already).
func Write(w http.ResponseWriter, r *http.Request, err error) {
	if err == nil {
		err = errors.New("apierr.Write called with a nil error")
	}
	e := From(err)
	if e.Status >= 500 && !e.logged {
		attrs := []any{"status", e.Status, "code", e.Code, "err", err}
		if r != nil {
			attrs = append(attrs, "method", r.Method, "path", r.URL.Path, "request_id", RequestID(r.Context()))
		}
		slog.Default().Error("api request failed", attrs...)
	}
	body, merr := json.Marshal(e)
	if merr != nil {
		// Only Fields can fail to marshal; fall back to the bare code and message.
		body, _ = json.Marshal(New(e.Status, e.Code, e.Message))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.retryAfter+time.Second-1)/time.Second), 10))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

// FormatBytes renders n bytes for messages: whole MiB/KiB when exact ("1 MiB"), else bytes.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}
