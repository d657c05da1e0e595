package hostapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/wrenn/wrenn/internal/envd/auth"
	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/httpjson"
)

// maxInitBody bounds an /init body; envVars are the only large part.
const maxInitBody = 16 << 20

// clockTolerance is how far the guest clock may be from an /init timestamp
// before it is stepped (after a restore it is as old as the snapshot).
const clockTolerance = time.Second

// initRequest is the /init body (docs/envd.md). Unknown fields, including
// E2B's volumeMounts, hyperloopIP, caBundle and lifecycleID, are ignored.
type initRequest struct {
	EnvVars        map[string]string `json:"envVars"`
	AccessToken    *string           `json:"accessToken"`
	Timestamp      *time.Time        `json:"timestamp"`
	DefaultUser    string            `json:"defaultUser"`
	DefaultWorkdir string            `json:"defaultWorkdir"`
}

var errTokenMismatch = errors.New("envd has an access token: /init needs it in " + auth.Header)

// initAllowed reports whether an /init may apply once envd has a token
// (docs/security.md): the first token is free; after that the caller must
// know the current one, in the header or re-sent in the body. Otherwise a
// process inside the capsule could re-initialise envd (its default user,
// environment or token).
func initAllowed(current, proof string, next *string) bool {
	return current == "" || auth.Equal(proof, current) || (next != nil && auth.Equal(*next, current))
}

func (h *host) init(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInitBody))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "read body: %v", err)
		return
	}
	var req initRequest
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid JSON body: %v", err)
			return
		}
	}
	proof := r.Header.Get(auth.Header)
	if !initAllowed(h.defaults.Token(), proof, req.AccessToken) {
		h.log.Warn("/init rejected", "err", errTokenMismatch)
		httpjson.Error(w, http.StatusUnauthorized, "%v", errTokenMismatch)
		return
	}
	u := defaults.Update{
		EnvVars:        req.EnvVars,
		DefaultUser:    req.DefaultUser,
		DefaultWorkdir: req.DefaultWorkdir,
		AccessToken:    req.AccessToken,
	}
	if req.Timestamp != nil {
		u.Timestamp = *req.Timestamp
	}
	applied, err := h.defaults.Apply(u, func(current string, next *string) error {
		if initAllowed(current, proof, next) {
			return nil
		}
		return errTokenMismatch
	})
	if err != nil {
		h.log.Warn("/init rejected", "err", err)
		httpjson.Error(w, http.StatusUnauthorized, "%v", err)
		return
	}
	if applied && !u.Timestamp.IsZero() {
		h.maybeStepClock(u.Timestamp)
	}
	h.log.Info("/init", "applied", applied, "env_vars", len(req.EnvVars),
		"default_user", req.DefaultUser, "token_change", req.AccessToken != nil)

	h.syncIdentity(r.Context())
	if h.ports != nil {
		h.ports.Start()
	}
	noContent(w)
}

// maybeStepClock sets the wall clock to ts when it is off by more than
// clockTolerance, and only when envd owns the clock (setClock non-nil).
func (h *host) maybeStepClock(ts time.Time) {
	if h.setClock == nil {
		return
	}
	drift := h.now().Sub(ts)
	if drift < clockTolerance && drift > -clockTolerance {
		return
	}
	if err := h.setClock(ts); err != nil {
		h.log.Warn("step clock", "err", err, "to", ts)
		return
	}
	h.log.Info("stepped clock", "to", ts, "drift", drift)
}
