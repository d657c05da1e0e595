package httpapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

// TestWebSocketsShutdown: a server shutting down closes its open WebSockets with 1001 going away and
// waits for their handlers; a WebSocket opened after the shutdown began is refused the same way.
func TestWebSocketsShutdown(t *testing.T) {
	signer, err := auth.NewSigner("httpapi-test-secret-0123456789abcdefgh")
	if err != nil {
		t.Fatal(err)
	}
	users := auth.UsersFunc(func(context.Context, string, string) (auth.UserState, error) {
		return auth.UserState{Status: auth.UserActive}, nil
	})
	authn := auth.NewAuthenticator(signer, users, nil)
	jwt, _, err := signer.IssueUser(auth.UserClaims{UserID: "usr-test", Email: "t@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	header := http.Header{"Authorization": {"Bearer " + jwt}}
	rt := httpapi.NewRouter(authn)
	handlerDone := make(chan error, 1)
	rt.HandleWS("/ws", auth.KindJWT, func(w http.ResponseWriter, r *http.Request) {
		c, _, ok := httpapi.AcceptWebSocket(w, r, rt.Authenticator(), auth.KindJWT)
		if !ok {
			return
		}
		// Echo until the connection ends.
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				handlerDone <- err
				return
			}
			if err := c.Write(r.Context(), typ, b); err != nil {
				handlerDone <- err
				return
			}
		}
	})
	ws := &httpapi.WebSockets{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rt, BaseContext: func(net.Listener) context.Context {
		return httpapi.WithWebSockets(context.Background(), ws)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	url := "ws://" + ln.Addr().String() + "/ws"

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != "hi" {
		t.Fatalf("echo: %q %v", b, err)
	}
	if n := ws.Len(); n != 1 {
		t.Fatalf("open websockets: %d", n)
	}

	// The client reads (as clients do), so it answers the close handshake.
	clientErr := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		clientErr <- err
	}()
	start := time.Now()
	if err := ws.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	select {
	case err := <-handlerDone:
		if websocket.CloseStatus(err) != websocket.StatusGoingAway && !errors.Is(err, net.ErrClosed) {
			t.Logf("handler ended with %v", err)
		}
	default:
		t.Fatal("Shutdown returned before the handler")
	}
	err = <-clientErr
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "server shutting down" {
		t.Fatalf("client saw %v; want close 1001 server shutting down", err)
	}
	if n := ws.Len(); n != 0 {
		t.Errorf("open websockets after shutdown: %d", n)
	}

	// New WebSockets are refused with the same close.
	c2, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	_, _, err = c2.Read(ctx)
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
		t.Fatalf("websocket opened during shutdown: %v", err)
	}
}
