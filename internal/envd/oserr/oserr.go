// Package oserr maps operating-system errors to Connect codes and HTTP
// statuses, in one place for every envd transport.
package oserr

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"syscall"

	"connectrpc.com/connect"
)

// Code returns the Connect code for err.
func Code(err error) connect.Code {
	var ce *connect.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code()
	case errors.Is(err, fs.ErrNotExist):
		return connect.CodeNotFound
	case errors.Is(err, fs.ErrExist):
		return connect.CodeAlreadyExists
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS):
		return connect.CodePermissionDenied
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.EINVAL),
		errors.Is(err, syscall.ENAMETOOLONG):
		return connect.CodeInvalidArgument
	case errors.Is(err, syscall.ELOOP):
		return connect.CodeFailedPrecondition
	default:
		// ENOSPC included: resource_exhausted would read as a rate limit to the SDK.
		return connect.CodeInternal
	}
}

// Connect wraps err as a Connect error with its mapped code and a message
// that says what failed ("stat /x: no such file or directory").
func Connect(err error, format string, args ...any) *connect.Error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	msg := fmt.Sprintf(format, args...)
	if IsNoSpace(err) {
		msg += ": no space left on device"
		return connect.NewError(connect.CodeInternal, fmt.Errorf("%s: %w", msg, err))
	}
	return connect.NewError(Code(err), fmt.Errorf("%s: %w", msg, err))
}

// IsNoSpace reports whether err means the disk or its inodes are full.
func IsNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// HTTPStatus returns the HTTP status for err on envd's plain HTTP endpoints.
func HTTPStatus(err error) int {
	if IsNoSpace(err) {
		return http.StatusInsufficientStorage
	}
	switch Code(err) {
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeAlreadyExists:
		return http.StatusBadRequest
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	default:
		return http.StatusInternalServerError
	}
}
