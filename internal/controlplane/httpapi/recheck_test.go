package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

// TestWebSocketCredentialRecheck: an open WebSocket whose credential is revoked — an API key sent in
// a header, a JWT sent as the first message whose user is deactivated — gets a fatal unauthorized
// frame and close 4001 at the next re-check; while the credential holds the socket stays open.
func TestWebSocketCredentialRecheck(t *testing.T) {
	signer, err := auth.NewSigner("httpapi-test-secret-0123456789abcdefgh")
	if err != nil {
		t.Fatal(err)
	}
	var userActive, keyValid atomic.Bool
	userActive.Store(true)
	keyValid.Store(true)
	users := auth.UsersFunc(func(context.Context, string, string) (auth.UserState, error) {
		if !userActive.Load() {
			return auth.UserState{Status: "disabled"}, nil
		}
		return auth.UserState{Status: auth.UserActive, Role: auth.RoleOwner}, nil
	})
	keys := auth.APIKeysFunc(func(context.Context, string) (auth.APIKeyRecord, error) {
		if !keyValid.Load() {
			return auth.APIKeyRecord{}, auth.ErrNotFound
		}
		return auth.APIKeyRecord{ID: "key-1", TeamID: "team-1", Name: "k"}, nil
	})
	authn := auth.NewAuthenticator(signer, users, keys)
	authn.SetRecheckInterval(100 * time.Millisecond)
	rt := httpapi.NewRouter(authn)
	rt.HandleWS("/v1/capsules/{id}/ws", auth.KindKeyOrJWT, func(w http.ResponseWriter, r *http.Request) {
		c, _, ok := httpapi.AcceptWebSocket(w, r, rt.Authenticator(), auth.KindKeyOrJWT)
		if !ok {
			return
		}
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/capsules/cl-1/ws"
	jwt, _, err := signer.IssueUser(auth.UserClaims{UserID: "usr-test", TeamID: "team-1", Role: auth.RoleOwner})
	if err != nil {
		t.Fatal(err)
	}

	// expectRevoked echoes once, sees the socket survive a few re-checks, revokes, and waits for the
	// error frame and close 4001.
	expectRevoked := func(t *testing.T, c *websocket.Conn, revoke func()) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		time.Sleep(350 * time.Millisecond) // several re-checks that pass
		if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, b, err := c.Read(ctx); err != nil || string(b) != "hi" {
			t.Fatalf("echo: %q %v", b, err)
		}
		revoke()
		_, b, err := c.Read(ctx)
		var f apierr.Frame
		if err != nil || json.Unmarshal(b, &f) != nil || f.Code != "unauthorized" || !f.Fatal {
			t.Fatalf("after revocation: %s %v", b, err)
		}
		_, _, err = c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != apierr.CloseRevoked {
			t.Fatalf("close after revocation: %v, want 4001", err)
		}
	}

	t.Run("APIKeyHeader", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"X-Api-Key": {"wrn_" + strings.Repeat("a", 32)}}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		expectRevoked(t, c, func() { keyValid.Store(false) })
	})

	t.Run("JWTFirstMessage", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"auth","token":"`+jwt+`"}`)); err != nil {
			t.Fatal(err)
		}
		expectRevoked(t, c, func() { userActive.Store(false) })
	})
}
