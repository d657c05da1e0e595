package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
)

// WriteJSON answers status with v as the JSON body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		apierr.Write(w, nil, apierr.Internal(err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if _, err := w.Write(append(body, '\n')); err != nil {
		slog.Debug("write response", "err", err)
	}
}

// NoContent answers 204.
func NoContent(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// Identity returns the caller the auth middleware stored in r's context. Handlers of authenticated
// routes always have one; a missing identity is a wiring bug and panics.
func Identity(r *http.Request) auth.Identity {
	id, ok := auth.FromContext(r.Context())
	if !ok {
		panic("httpapi: no identity in the context of " + r.Method + " " + r.URL.Path + " (route registered without a kind?)")
	}
	return id
}

// Errors adapts a handler that returns its error instead of writing it: a non-nil error is answered
// with the API error body (apierr.Write). The handler writes its success answer itself.
func Errors(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			apierr.Write(w, r, err)
		}
	}
}
