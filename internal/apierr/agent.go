package apierr

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
)

// agentErrorMessage is what an API user learns of an agent failure the API has no code for; the
// agent's text (host paths, runsc output) goes to the log under the request id.
const agentErrorMessage = "host agent error"

// FromAgent maps an error of a host-agent RPC to an API error by its Connect code, never by its text
// (docs/api.md); it is the only place the control plane does. The agent's message is kept for the
// codes the API has a kind for (not found, invalid, conflict, forbidden, timeout, storage,
// unimplemented). An unavailable agent answers host_unavailable with a fixed message (the text is a
// transport error). Anything else (internal, unknown, canceled, an error that is not Connect's) is
// logged with ctx's request id and answers 502 agent_error "host agent error (request <id>)", without
// the agent's text. An *Error passes through; err stays the cause; a nil err returns nil.
func FromAgent(ctx context.Context, err error) *Error {
	if err == nil {
		return nil
	}
	out, mapped := fromAgent(err)
	if mapped {
		return out
	}
	id := RequestID(ctx)
	if id != "" {
		out.Message = agentErrorMessage + " (request " + id + ")"
	}
	slog.Default().ErrorContext(ctx, "host agent error", "request_id", id,
		"agent_code", connect.CodeOf(err).String(), "err", err)
	out.logged = true
	return out
}

// AgentNotFound reports whether err, an error of a host-agent RPC, is the agent's not found (what
// FromAgent answers 404 not_found), e.g. destroying a capsule the host no longer has.
func AgentNotFound(err error) bool {
	if err == nil {
		return false
	}
	out, _ := fromAgent(err)
	return out.Code == CodeNotFound
}

// fromAgent is FromAgent without logging: mapped is false when err has no kind of its own, and out
// is then a 502 agent_error with the generic message.
func fromAgent(err error) (out *Error, mapped bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	msg := err.Error()
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg = ce.Message()
	}
	code := connect.CodeOf(err)
	if ce == nil && errors.Is(err, context.DeadlineExceeded) {
		code = connect.CodeDeadlineExceeded // the call's own deadline fired before the client wrapped it
	}
	if msg == "" {
		msg = agentErrorMessage
	}
	mapped = true
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
		out, mapped = AgentError(agentErrorMessage), false
	}
	out.Err = err
	return out, mapped
}
