// Package apiclient is the wrenn CLI's client of the control plane's REST API and WebSockets, shared
// by the commands and `wrenn up`.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Auth is the credential a route takes (docs/api.md).
type Auth int

const (
	// AuthNone: a public route.
	AuthNone Auth = iota
	// AuthKey: KEY|JWT routes (/v1/capsules*, /v1/snapshots*): the API key, else the user JWT.
	AuthKey
	// AuthUser: JWT routes (accounts, API keys, hosts): the user JWT only.
	AuthUser
)

// wsReadLimit bounds one WebSocket frame; output frames carry base64 chunks of up to a few hundred KiB.
const wsReadLimit = 16 << 20

// Client calls the control plane's API.
type Client struct {
	base   string // e.g. http://127.0.0.1:8080, no trailing slash
	apiKey string // wrn_…
	token  string // user JWT
	http   *http.Client
}

// New returns a client of the API at base with the given credentials (either may be empty).
func New(base, apiKey, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	// No overall timeout: foreground execs, snapshots and file transfers take as long as they take; the
	// command's context (Ctrl-C) ends them.
	return &Client{base: strings.TrimRight(base, "/"), apiKey: apiKey, token: token, http: &http.Client{Transport: tr}}
}

// WithCredentials returns a client of the same API, sharing c's connections, with other credentials.
func (c *Client) WithCredentials(apiKey, token string) *Client {
	return &Client{base: c.base, apiKey: apiKey, token: token, http: c.http}
}

// APIError is an error answer of the API: {"error":{"code","message",…}}.
type APIError struct {
	Status  int
	Code    string
	Message string
	// CapsuleIDs are the capsules of has_active_capsules.
	CapsuleIDs []string
	// withJWT: the request carried the user JWT (a 401 then means the login expired).
	withJWT bool
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	switch {
	case e.Code == "has_active_capsules" && len(e.CapsuleIDs) > 0:
		msg += " (capsules: " + strings.Join(e.CapsuleIDs, ", ") + ")"
	case e.Status == http.StatusUnauthorized && e.withJWT:
		msg += " (the login may have expired: run `wrenn login` again)"
	}
	return msg
}

// ReachError is a failure to connect to the control plane at all.
type ReachError struct {
	URL string
	Err error
}

func (e *ReachError) Error() string {
	return fmt.Sprintf("cannot reach the control plane at %s: %v", e.URL, e.Err)
}

func (e *ReachError) Unwrap() error { return e.Err }

// authorize sets the credential route kind a takes on h; withJWT reports the user JWT was used.
func (c *Client) authorize(h http.Header, a Auth) (bool, error) {
	switch a {
	case AuthKey:
		if c.apiKey != "" {
			h.Set("X-API-Key", c.apiKey)
			return false, nil
		}
		if c.token != "" {
			h.Set("Authorization", "Bearer "+c.token)
			return true, nil
		}
		return false, errors.New("no credentials: run `wrenn login` (or `wrenn up`), or pass --api-key / WRENN_API_KEY")
	case AuthUser:
		if c.token != "" {
			h.Set("Authorization", "Bearer "+c.token)
			return true, nil
		}
		return false, errors.New("this command needs a user login, not an API key: run `wrenn login`")
	}
	return false, nil
}

// Request sends one request and returns the response of a 2xx answer (the caller closes its body); other
// answers become *APIError, connection failures *ReachError.
func (c *Client) Request(ctx context.Context, method, path string, a Auth, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	withJWT, err := c.authorize(req.Header, a)
	if err != nil {
		return nil, err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	if res.StatusCode/100 != 2 {
		defer res.Body.Close()
		return nil, decodeError(res, withJWT)
	}
	return res, nil
}

// transportError turns a failed round trip into a ReachError (or the context's error).
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &ReachError{URL: c.base, Err: err}
}

// decodeError reads an error answer.
func decodeError(res *http.Response, withJWT bool) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var body struct {
		Error struct {
			Code       string   `json:"code"`
			Message    string   `json:"message"`
			CapsuleIDs []string `json:"capsule_ids"`
		} `json:"error"`
	}
	e := &APIError{Status: res.StatusCode, withJWT: withJWT}
	if json.Unmarshal(b, &body) == nil && (body.Error.Code != "" || body.Error.Message != "") {
		e.Code, e.Message, e.CapsuleIDs = body.Error.Code, body.Error.Message, body.Error.CapsuleIDs
		return e
	}
	// Not the API's error shape (a proxy, or not a Wrenn control plane): show the start of the body.
	text := strings.TrimSpace(string(b))
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	e.Message = fmt.Sprintf("HTTP %d %s", res.StatusCode, http.StatusText(res.StatusCode))
	if text != "" {
		e.Message += ": " + text
	}
	return e
}

// Call sends a JSON request (in may be nil) and returns the raw JSON answer (empty for 204).
func (c *Client) Call(ctx context.Context, method, path string, a Auth, in any) ([]byte, error) {
	var body io.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	res, err := c.Request(ctx, method, path, a, body, ct)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	return b, nil
}

// CallInto is Call that also decodes the answer into out.
func (c *Client) CallInto(ctx context.Context, method, path string, a Auth, in, out any) ([]byte, error) {
	b, err := c.Call(ctx, method, path, a, in)
	if err != nil {
		return nil, err
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("unexpected answer of %s %s: %w", method, path, err)
		}
	}
	return b, nil
}

// Dial opens a WebSocket of the API with header credentials. A refused upgrade becomes an *APIError.
func (c *Client) Dial(ctx context.Context, path string, a Auth) (*websocket.Conn, error) {
	u := c.base + path
	switch {
	case strings.HasPrefix(u, "https://"):
		u = "wss://" + strings.TrimPrefix(u, "https://")
	case strings.HasPrefix(u, "http://"):
		u = "ws://" + strings.TrimPrefix(u, "http://")
	}
	h := http.Header{}
	withJWT, err := c.authorize(h, a)
	if err != nil {
		return nil, err
	}
	conn, res, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h, HTTPClient: c.http})
	if err != nil {
		if res != nil && res.StatusCode != http.StatusSwitchingProtocols {
			return nil, decodeError(res, withJWT)
		}
		return nil, c.transportError(ctx, err)
	}
	conn.SetReadLimit(wsReadLimit)
	return conn, nil
}
