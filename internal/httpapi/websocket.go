package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/auth"
)

// maxMessage bounds a client message; PTY input frames are the largest (base64 of a paste).
const maxMessage = 4 << 20

// writeTimeout bounds one frame write so a stalled client cannot hold a handler forever.
const writeTimeout = 10 * time.Second

// AcceptWebSocket authenticates and upgrades a WebSocket request (§1.3): header credentials are
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
	if headerAuth {
		return c, id, true
	}
	id, err = authn.AuthenticateFirstMessage(r.Context(), kind, r.URL.Path, func(ctx context.Context) ([]byte, error) {
		_, b, err := c.Read(ctx)
		return b, err
	})
	if err != nil {
		CloseWithError(r.Context(), c, err)
		return nil, auth.Identity{}, false
	}
	return c, id, true
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

// CloseWithError sends err as a fatal error frame (§1.5) and closes the socket: 1011 for server
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
