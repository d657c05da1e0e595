package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
)

// FirstMessageTimeout is how long a WebSocket without header credentials has to send its auth message.
const FirstMessageTimeout = 5 * time.Second

// MessageAuthFailed is the data of the fatal error frame sent when WebSocket authentication fails:
// {"type":"error","code":"unauthorized","data":"authentication failed","fatal":true}.
const MessageAuthFailed = "authentication failed"

// RecheckInterval is how often an open WebSocket's credential is checked again: a revoked key, a
// removed member, a deactivated user or an ended session closes the socket (docs/security.md).
const RecheckInterval = 60 * time.Second

// RecheckEvery returns how often open WebSockets re-check their credential.
func (a *Authenticator) RecheckEvery() time.Duration {
	if a.recheck > 0 {
		return a.recheck
	}
	return RecheckInterval
}

// SetRecheckInterval changes RecheckEvery (tests shorten it); ≤ 0 restores RecheckInterval.
func (a *Authenticator) SetRecheckInterval(d time.Duration) { a.recheck = d }

// ReadFunc reads the next client message of a WebSocket. It must return once ctx is done or the
// connection is closed.
type ReadFunc func(ctx context.Context) ([]byte, error)

// AuthenticateUpgrade checks the header credentials of a WebSocket upgrade request (docs/api.md). With no
// X-API-Key and no Authorization header it returns ok=false and no error: upgrade, then call
// AuthenticateFirstMessage. With header credentials it returns ok=true and the result of Authenticate;
// on error answer plain HTTP (apierr.Write) and do not upgrade.
func (a *Authenticator) AuthenticateUpgrade(r *http.Request, kind Kind) (id Identity, ok bool, err error) {
	c := CredentialsFrom(r)
	if c.APIKey == "" && c.Authorization == "" {
		return Identity{}, false, nil
	}
	id, err = a.Authenticate(r.Context(), kind, r.URL.Path, c)
	return id, true, err
}

// authMessage is the first client message of a WebSocket without header credentials.
type authMessage struct {
	Type  string `json:"type"`
	Token string `json:"token"`
}

// AuthenticateFirstMessage waits up to FirstMessageTimeout for the first client message, which must be
// {"type":"auth","token":"<user JWT or API key>"}, and authenticates its token for kind at path. Any
// authentication failure — timeout, read error, another message, bad token, and the 403s of
// Authenticate — is 401 unauthorized "authentication failed" (the cause is kept for logs); a failed
// lookup stays 500 internal_error. On error send apierr.ErrorFrame(err, true) and close the socket.
//
// read runs in its own goroutine with ctx, not with the timeout: some WebSocket libraries close the
// connection when a read's context ends, which would leave no way to send the error frame. When the
// timeout fires first, that goroutine ends when ctx is done or the caller closes the connection.
func (a *Authenticator) AuthenticateFirstMessage(ctx context.Context, kind Kind, path string, read ReadFunc) (Identity, error) {
	id, _, err := a.AuthenticateFirstMessageCredentials(ctx, kind, path, read)
	return id, err
}

// AuthenticateFirstMessageCredentials is AuthenticateFirstMessage that also returns the credentials
// the message carried (to check them again later).
func (a *Authenticator) AuthenticateFirstMessageCredentials(ctx context.Context, kind Kind, path string, read ReadFunc) (Identity, Credentials, error) {
	type result struct {
		msg []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		msg, err := read(ctx)
		done <- result{msg, err}
	}()
	timer := time.NewTimer(a.firstMessageTimeout())
	defer timer.Stop()

	var msg []byte
	select {
	case res := <-done:
		if res.err != nil {
			return Identity{}, Credentials{}, authFailed(fmt.Errorf("read auth message: %w", res.err))
		}
		msg = res.msg
	case <-timer.C:
		return Identity{}, Credentials{}, authFailed(fmt.Errorf("no auth message within %s", a.firstMessageTimeout()))
	case <-ctx.Done():
		return Identity{}, Credentials{}, authFailed(fmt.Errorf("read auth message: %w", ctx.Err()))
	}

	var m authMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return Identity{}, Credentials{}, authFailed(fmt.Errorf("parse auth message: %w", err))
	}
	if m.Type != "auth" {
		return Identity{}, Credentials{}, authFailed(fmt.Errorf("first message has type %q, want auth", m.Type))
	}
	tok := strings.TrimSpace(m.Token)
	if tok == "" {
		return Identity{}, Credentials{}, authFailed(errors.New("auth message without token"))
	}
	c := Credentials{Authorization: "Bearer " + tok}
	if strings.HasPrefix(tok, APIKeyPrefix) {
		c = Credentials{APIKey: tok}
	}
	id, err := a.Authenticate(ctx, kind, path, c)
	if err != nil {
		if e := apierr.From(err); e.Status >= 500 {
			return Identity{}, Credentials{}, e
		}
		return Identity{}, Credentials{}, authFailed(err)
	}
	return id, c, nil
}

func authFailed(cause error) *apierr.Error {
	return apierr.Unauthorized(MessageAuthFailed).WithCause(cause)
}

func (a *Authenticator) firstMessageTimeout() time.Duration {
	if a.wsTimeout > 0 {
		return a.wsTimeout
	}
	return FirstMessageTimeout
}
