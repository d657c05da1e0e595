package apierr

import (
	"context"
	"errors"

	"connectrpc.com/connect"
)

// FromAgent maps an error of a host-agent RPC to an API error by its Connect code, never by its text
// (§1.6 step 5). The agent's message is kept (except for unavailable, whose text is a transport
// error); err stays the cause. A nil err returns nil.
func FromAgent(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	if msg == "" {
		msg = "host agent error"
	}
	code := connect.CodeOf(err)
	if ce == nil && errors.Is(err, context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded // the call's own deadline fired before the client wrapped it
	}
	var out *Error
	switch code {
	case connect.CodeNotFound:
		out = NotFound(msg)
	case connect.CodeInvalidArgument:
		out = InvalidRequest(msg)
	case connect.CodeAlreadyExists, connect.CodeFailedPrecondition:
		out = Conflict(msg)
	case connect.CodePermissionDenied:
		out = Forbidden(msg)
	case connect.CodeDeadlineExceeded:
		out = Timeout(msg)
	case connect.CodeResourceExhausted:
		out = InsufficientStorage(msg)
	case connect.CodeUnavailable:
		// The text is a transport error naming internal addresses; say what the client can act on.
		out = HostUnavailable("sandbox host is not reachable")
	case connect.CodeUnimplemented:
		out = AgentUnimplemented(msg)
	default:
		out = AgentError(msg)
	}
	out.Err = err
	return out
}
