package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// invalid is an InvalidArgument error with a message for the caller.
func invalid(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// toConnect maps an error of the agent, of envd or of the context to a
// Connect error; this is the only place the agent picks error codes for
// errors it did not create itself. The agent's errors are mapped by their
// kind (internal/hostagent/runtime/errors.go), never by their text.
func toConnect(err error) *connect.Error {
	var ce *connect.Error
	switch {
	case errors.Is(err, runtime.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, runtime.ErrExists):
		return connect.NewError(connect.CodeAlreadyExists, err)
	case errors.Is(err, runtime.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, runtime.ErrState):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case envdclient.StatusOf(err) != 0:
		return connect.NewError(httpCode(envdclient.StatusOf(err)), err)
	case errors.As(err, &ce):
		// Keep envd's code and message, not the HTTP metadata of its answer.
		return connect.NewError(ce.Code(), errors.New(ce.Message()))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return connect.NewError(connect.CodeUnavailable, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// httpCode maps an envd HTTP status to a Connect code.
func httpCode(status int) connect.Code {
	switch status {
	case http.StatusBadRequest:
		return connect.CodeInvalidArgument
	case http.StatusUnauthorized, http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeNotFound
	case http.StatusInsufficientStorage:
		return connect.CodeResourceExhausted
	default:
		return connect.CodeInternal
	}
}
