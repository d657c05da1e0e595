// Package files serves GET and POST /files (docs/envd.md–docs/envd.md): streaming
// downloads and uploads of whole files, authorized by the access token or a
// URL signature.
package files

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/httpjson"
	"github.com/wrenn/wrenn/internal/envd/oserr"
	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// copyBufferSize is the unit of every transfer; memory per request stays
// around this size however large the file is.
const copyBufferSize = 1 << 20

// Handler serves /files.
type Handler struct {
	log      *slog.Logger
	defaults *defaults.Store
}

// New returns the /files handler.
func New(log *slog.Logger, d *defaults.Store) http.Handler {
	return &Handler{log: log, defaults: d}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.download(w, r)
	case http.MethodPost:
		h.upload(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		httpjson.Error(w, http.StatusMethodNotAllowed, "method %s not allowed on /files", r.Method)
	}
}

// statusError is an error with the HTTP status it should be answered with.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

func withStatus(status int, format string, args ...any) error {
	return &statusError{status: status, err: fmt.Errorf(format, args...)}
}

// fail answers err with its status; server-side failures are logged.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := oserr.HTTPStatus(err)
	var se *statusError
	if errors.As(err, &se) {
		status = se.status
	}
	if status >= 500 {
		h.log.WarnContext(r.Context(), "files request failed", "method", r.Method, "status", status, "error", err)
	}
	msg := err.Error()
	if status == http.StatusInsufficientStorage {
		msg = "not enough disk space: " + msg
	}
	httpjson.Error(w, status, "%s", msg)
}

// requestUser returns the user named by the username query parameter, or
// the default user when it is absent.
func (h *Handler) requestUser(r *http.Request) (*osuser.User, error) {
	name := r.URL.Query().Get("username")
	if name == "" {
		name = h.defaults.DefaultUser()
	}
	u, err := osuser.Lookup(name)
	if err != nil {
		if errors.Is(err, osuser.ErrUnknownUser) {
			return nil, &statusError{status: http.StatusUnauthorized, err: err}
		}
		return nil, &statusError{status: http.StatusInternalServerError, err: err}
	}
	return u, nil
}

// resolve resolves a request path for u.
func (h *Handler) resolve(u *osuser.User, path string) (string, error) {
	p, err := osuser.ResolvePath(u, path, h.defaults.DefaultWorkdir())
	if err != nil {
		return "", &statusError{status: http.StatusBadRequest, err: err}
	}
	return p, nil
}
