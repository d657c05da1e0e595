package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
)

// maxMessage bounds a client message; PTY input frames are the largest (base64 of a paste).
const maxMessage = 4 << 20

// writeTimeout bounds one frame write so a stalled client cannot hold a handler forever.
const writeTimeout = 10 * time.Second

// AcceptWebSocket authenticates and upgrades a WebSocket request (docs/api.md): header credentials are
// checked before the upgrade (failure → plain HTTP error, no upgrade); without them the upgrade
// happens and the first message must be {"type":"auth","token":…} within 5 s (failure → fatal error
// frame and close). ok=false means the request has been answered and the handler must return.
// The connection accepts any Origin; its read limit fits the largest protocol message.
func AcceptWebSocket(w http.ResponseWriter, r *http.Request, authn *auth.Authenticator, kind auth.Kind) (*websocket.Conn, auth.Identity, bool) {
	id, headerAuth, err := authn.AuthenticateUpgrade(r, kind)
	if err != nil {
		apierr.Write(w, r, err)
		return nil, auth.Identity{}, false
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return nil, auth.Identity{}, false // Accept has answered the request
	}
	c.SetReadLimit(maxMessage)
	if ws := websocketsFrom(r.Context()); ws != nil && !ws.track(r.Context(), c) {
		_ = c.Close(websocket.StatusGoingAway, msgShuttingDown)
		return nil, auth.Identity{}, false
	}
	creds := auth.CredentialsFrom(r)
	if !headerAuth {
		id, creds, err = authn.AuthenticateFirstMessageCredentials(r.Context(), kind, r.URL.Path, func(ctx context.Context) ([]byte, error) {
			_, b, err := c.Read(ctx)
			return b, err
		})
		if err != nil {
			CloseWithError(r.Context(), c, err)
			return nil, auth.Identity{}, false
		}
	}
	watchCredentials(r.Context(), c, authn, kind, r.URL.Path, creds)
	return c, id, true
}

// msgRevoked is the close reason and error frame of a WebSocket whose credential was revoked.
const msgRevoked = "credentials revoked"

// watchCredentials checks creds again every authn.RecheckEvery() while the socket's request lasts
// (the server ends a request's context when its handler returns): when they no longer authenticate
// (a revoked key, a removed member, a deactivated user, an ended session) the socket gets a fatal
// unauthorized frame and is closed with 4001. Server failures and rate limits do not close it.
func watchCredentials(ctx context.Context, c *websocket.Conn, authn *auth.Authenticator, kind auth.Kind, path string, creds auth.Credentials) {
	t := time.NewTicker(authn.RecheckEvery())
	go func() {
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_, err := authn.Authenticate(ctx, kind, path, creds)
			if err == nil || ctx.Err() != nil {
				continue
			}
			if e := apierr.From(err); e.Status >= 500 || e.Status == http.StatusTooManyRequests {
				continue
			}
			_ = WriteFrame(ctx, c, apierr.ErrorFrame(apierr.Unauthorized(msgRevoked), true))
			_ = c.Close(websocket.StatusCode(apierr.CloseRevoked), msgRevoked)
			return
		}
	}()
}

// WriteFrame sends v as one JSON text frame.
func WriteFrame(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, b)
}

// CloseWithError sends err as a fatal error frame (docs/api.md) and closes the socket: 1011 for server
// failures (5xx), else 1000.
func CloseWithError(ctx context.Context, c *websocket.Conn, err error) {
	e := apierr.From(err)
	_ = WriteFrame(context.WithoutCancel(ctx), c, apierr.ErrorFrame(e, true))
	code := websocket.StatusCode(apierr.CloseNormal)
	if e.Status >= 500 {
		code = websocket.StatusCode(apierr.CloseInternalError)
	}
	_ = c.Close(code, "")
}

// msgShuttingDown is the close reason of WebSockets ended by a server shutdown.
const msgShuttingDown = "server shutting down"

// WebSockets tracks the WebSocket connections a server accepted, so a graceful shutdown can end them
// cleanly: http.Server.Shutdown neither waits for nor closes hijacked connections. Put it in the
// server's base context (WithWebSockets); AcceptWebSocket then registers every connection until its
// handler returns.
type WebSockets struct {
	mu      sync.Mutex
	conns   map[*websocket.Conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

type websocketsKey struct{}

// WithWebSockets returns ctx carrying ws (use it as the server's BaseContext).
func WithWebSockets(ctx context.Context, ws *WebSockets) context.Context {
	return context.WithValue(ctx, websocketsKey{}, ws)
}

func websocketsFrom(ctx context.Context) *WebSockets {
	ws, _ := ctx.Value(websocketsKey{}).(*WebSockets)
	return ws
}

// track registers c until reqCtx ends (the server cancels a request's context when its handler
// returns, hijacked or not); false: the server is shutting down, c must be closed.
func (ws *WebSockets) track(reqCtx context.Context, c *websocket.Conn) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closing {
		return false
	}
	if ws.conns == nil {
		ws.conns = map[*websocket.Conn]struct{}{}
	}
	ws.conns[c] = struct{}{}
	ws.wg.Add(1)
	context.AfterFunc(reqCtx, func() {
		ws.mu.Lock()
		delete(ws.conns, c)
		ws.mu.Unlock()
		ws.wg.Done()
	})
	return true
}

// Len is the number of open WebSocket connections.
func (ws *WebSockets) Len() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.conns)
}

// Shutdown refuses new WebSockets, closes every open one with 1001 (going away, reason "server
// shutting down") and waits until their handlers have returned or ctx ends.
func (ws *WebSockets) Shutdown(ctx context.Context) error {
	ws.mu.Lock()
	ws.closing = true
	conns := make([]*websocket.Conn, 0, len(ws.conns))
	for c := range ws.conns {
		conns = append(conns, c)
	}
	ws.mu.Unlock()
	for _, c := range conns {
		// Close waits (up to 5 s) for the peer's close frame; close them all at once.
		go func() { _ = c.Close(websocket.StatusGoingAway, msgShuttingDown) }()
	}
	done := make(chan struct{})
	go func() {
		ws.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
