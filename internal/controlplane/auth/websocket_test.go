package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/apierr"
)

// reader returns a ReadFunc that answers msg/err, or blocks until ctx is done when block is set.
func reader(msg string, err error, block bool) ReadFunc {
	return func(ctx context.Context) ([]byte, error) {
		if block {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return []byte(msg), err
	}
}

func TestAuthenticateUpgrade(t *testing.T) {
	f := newFixture(t)
	member := f.userToken(t, "usr-member", "team-a")
	tests := []struct {
		name   string
		header map[string]string
		ok     bool
		status int
	}{
		{"no headers: authenticate by first message", nil, false, 0},
		{"host token is not a websocket credential", map[string]string{"X-Host-Token": "x"}, false, 0},
		{"valid bearer", map[string]string{"Authorization": bearer(member)}, true, 0},
		{"invalid bearer: plain 401", map[string]string{"Authorization": bearer("nope")}, true, 401},
		{"invalid key: plain 401", map[string]string{"X-API-Key": "wrn_x"}, true, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/capsules/cl-1/pty", nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			id, ok, err := f.auth.AuthenticateUpgrade(r, KindKeyOrJWT)
			if ok != tt.ok {
				t.Fatalf("ok = %v", ok)
			}
			if tt.status != 0 {
				requireCode(t, err, tt.status, apierr.CodeUnauthorized)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok && id.UserID != "usr-member" {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}

func TestAuthenticateFirstMessage(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFixture(t)
	f.auth.wsTimeout = 50 * time.Millisecond
	member := f.userToken(t, "usr-member", "team-a")
	admin := f.userToken(t, "usr-admin", "team-a")
	disabled := f.userToken(t, "usr-disabled", "team-a")
	key := f.apiKey("team-a")

	tests := []struct {
		name   string
		kind   Kind
		read   ReadFunc
		status int // 0 = success
		code   string
		method Method
	}{
		{name: "jwt", kind: KindKeyOrJWT, read: reader(`{"type":"auth","token":"`+member+`"}`, nil, false), method: MethodJWT},
		{name: "api key", kind: KindKeyOrJWT, read: reader(`{"type":"auth","token":"`+key+`"}`, nil, false), method: MethodAPIKey},
		{name: "extra fields ignored", kind: KindKeyOrJWT, read: reader(`{"type":"auth","token":"`+key+`","x":1}`, nil, false), method: MethodAPIKey},
		{name: "admin route with admin jwt", kind: KindAdmin, read: reader(`{"type":"auth","token":"`+admin+`"}`, nil, false), method: MethodJWT},
		{name: "admin route with member jwt", kind: KindAdmin, read: reader(`{"type":"auth","token":"`+member+`"}`, nil, false), status: 401, code: "unauthorized"},
		{name: "admin route with api key", kind: KindAdmin, read: reader(`{"type":"auth","token":"`+key+`"}`, nil, false), status: 401, code: "unauthorized"},
		{name: "deactivated user", kind: KindKeyOrJWT, read: reader(`{"type":"auth","token":"`+disabled+`"}`, nil, false), status: 401, code: "unauthorized"},
		{name: "bad token", kind: KindKeyOrJWT, read: reader(`{"type":"auth","token":"abc"}`, nil, false), status: 401, code: "unauthorized"},
		{name: "unknown key", kind: KindKeyOrJWT, read: reader(`{"type":"auth","token":"`+GenerateAPIKey().Secret+`"}`, nil, false), status: 401, code: "unauthorized"},
		{name: "empty token", kind: KindKeyOrJWT, read: reader(`{"type":"auth","token":"  "}`, nil, false), status: 401, code: "unauthorized"},
		{name: "wrong type", kind: KindKeyOrJWT, read: reader(`{"type":"start","token":"`+member+`"}`, nil, false), status: 401, code: "unauthorized"},
		{name: "not json", kind: KindKeyOrJWT, read: reader(`hello`, nil, false), status: 401, code: "unauthorized"},
		{name: "read error", kind: KindKeyOrJWT, read: reader("", errors.New("closed"), false), status: 401, code: "unauthorized"},
		{name: "timeout", kind: KindKeyOrJWT, read: reader("", nil, true), status: 401, code: "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // ends a reader still blocked after a timeout, as the end of the request would
			id, err := f.auth.AuthenticateFirstMessage(ctx, tt.kind, "/v1/capsules/cl-1/pty", tt.read)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if id.Method != tt.method || id.TeamID != "team-a" {
					t.Fatalf("identity %+v", id)
				}
				return
			}
			e := requireCode(t, err, tt.status, tt.code)
			if e.Message != MessageAuthFailed || e.Err == nil {
				t.Fatalf("got %q (cause %v)", e.Message, e.Err)
			}
			frame, _ := json.Marshal(apierr.ErrorFrame(err, true))
			if want := `{"type":"error","data":"authentication failed","code":"unauthorized","fatal":true}`; string(frame) != want {
				t.Fatalf("frame %s, want %s", frame, want)
			}
		})
	}
}

func TestAuthenticateFirstMessageTimeoutKeepsReading(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFixture(t)
	f.auth.wsTimeout = 20 * time.Millisecond
	// The reader ignores ctx (like a library without context support) and returns only when "closed".
	closed := make(chan struct{})
	read := func(context.Context) ([]byte, error) {
		<-closed
		return nil, errors.New("use of closed connection")
	}
	start := time.Now()
	_, err := f.auth.AuthenticateFirstMessage(context.Background(), KindKeyOrJWT, "/v1/capsules", read)
	requireCode(t, err, 401, apierr.CodeUnauthorized)
	// The reader never returns on its own; the upper bound is generous for a slow machine.
	if d := time.Since(start); d < 20*time.Millisecond || d > 10*time.Second {
		t.Fatalf("returned after %v", d)
	}
	close(closed) // the caller closes the socket after the fatal frame; the reader goroutine ends
}

func TestAuthenticateFirstMessageContextDone(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.auth.AuthenticateFirstMessage(ctx, KindKeyOrJWT, "/v1/capsules", reader("", nil, true))
	requireCode(t, err, 401, apierr.CodeUnauthorized)
}

func TestAuthenticateFirstMessageLookupFailure(t *testing.T) {
	f := newFixture(t)
	member := f.userToken(t, "usr-member", "team-a")
	f.usersErr = errors.New("db down")
	_, err := f.auth.AuthenticateFirstMessage(context.Background(), KindKeyOrJWT, "/v1/capsules",
		reader(`{"type":"auth","token":"`+member+`"}`, nil, false))
	requireCode(t, err, 500, apierr.CodeInternalError)
}

func TestFirstMessageTimeoutDefault(t *testing.T) {
	if FirstMessageTimeout != 5*time.Second {
		t.Fatalf("FirstMessageTimeout = %v", FirstMessageTimeout)
	}
	if got := NewAuthenticator(nil, nil, nil).firstMessageTimeout(); got != FirstMessageTimeout {
		t.Fatalf("default timeout %v", got)
	}
}
