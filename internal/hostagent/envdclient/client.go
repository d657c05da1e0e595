// Package envdclient is the host agent's client for envd inside a capsule:
// the plain HTTP endpoints the host drives (/health, /init,
// /snapshot/prepare, /metrics, /files) and Connect clients for the process
// and filesystem services.
package envdclient

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

	"github.com/wrenn/wrenn/api/envd/filesystem/filesystemconnect"
	"github.com/wrenn/wrenn/api/envd/process/processconnect"
)

// Port is envd's port in every capsule.
const Port = 49983

// Client talks to one capsule's envd.
type Client struct {
	base    string
	http    *http.Client
	Process processconnect.ProcessClient
	FS      filesystemconnect.FilesystemClient
}

// transport is shared by every client: connections to capsules are pooled
// per address, and a stream may stay open for hours.
var transport = &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost: 8,
	IdleConnTimeout:     60 * time.Second,
	DisableCompression:  true,
}

// TokenHeader carries envd's access token (docs/security.md).
const TokenHeader = "X-Access-Token"

// Option configures a Client.
type Option func(*options)

type options struct{ token string }

// WithToken makes every request carry envd's access token; "" sends none.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// tokenTransport adds the access token to every request.
type tokenTransport struct {
	token string
	next  http.RoundTripper
}

func (t tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(TokenHeader, t.token)
	return t.next.RoundTrip(req)
}

// New returns a client for envd at addr: the capsule's IP (port 49983), or
// host:port.
func New(addr string, opts ...Option) *Client {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, fmt.Sprint(Port))
	}
	base := "http://" + addr
	var rt http.RoundTripper = transport
	if o.token != "" {
		rt = tokenTransport{token: o.token, next: transport}
	}
	hc := &http.Client{Transport: rt}
	return &Client{
		base:    base,
		http:    hc,
		Process: processconnect.NewProcessClient(hc, base),
		FS:      filesystemconnect.NewFilesystemClient(hc, base),
	}
}

// CloseIdle drops pooled connections to every capsule; call when a capsule
// goes away so its sockets are not kept.
func CloseIdle() { transport.CloseIdleConnections() }

// Error is a non-2xx answer from envd's plain HTTP endpoints.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("envd: %d %s", e.Status, e.Message) }

// StatusOf returns the HTTP status of an envd *Error, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode/100 != 2 {
		defer res.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		var body struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &body) == nil && body.Message != "" {
			msg = body.Message
		}
		return nil, &Error{Status: res.StatusCode, Message: msg}
	}
	return res, nil
}

func (c *Client) simple(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return res.Body.Close()
}

// Health checks envd once.
func (c *Client) Health(ctx context.Context) error {
	return c.simple(ctx, http.MethodGet, "/health", nil)
}

// WaitHealthy polls /health until envd answers or ctx ends: every 2 ms at
// first (envd is usually up some 20 ms after its sandbox starts, and every
// millisecond here is create latency), backing off to every 100 ms.
func (c *Client) WaitHealthy(ctx context.Context) error {
	wait := 2 * time.Millisecond
	t := time.NewTimer(0)
	defer t.Stop()
	var err error
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("envd at %s not healthy: %w (last error: %v)", c.base, ctx.Err(), err)
		case <-t.C:
		}
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		err = c.Health(attempt)
		cancel()
		if err == nil {
			return nil
		}
		t.Reset(wait)
		wait = min(wait*3/2, 100*time.Millisecond)
	}
}

// Init is the /init body.
type Init struct {
	EnvVars        map[string]string `json:"envVars,omitempty"`
	DefaultUser    string            `json:"defaultUser,omitempty"`
	DefaultWorkdir string            `json:"defaultWorkdir,omitempty"`
	AccessToken    *string           `json:"accessToken,omitempty"`
	Timestamp      time.Time         `json:"timestamp"`
}

// Init applies defaults, makes envd re-read the capsule identity and
// (re)starts its port subsystem.
func (c *Client) Init(ctx context.Context, in Init) error {
	if in.Timestamp.IsZero() {
		in.Timestamp = time.Now().UTC()
	}
	return c.simple(ctx, http.MethodPost, "/init", in)
}

// PrepareSnapshot quiesces envd right before the capsule is frozen.
func (c *Client) PrepareSnapshot(ctx context.Context) error {
	return c.simple(ctx, http.MethodPost, "/snapshot/prepare", nil)
}

// Metrics is envd's /metrics answer.
type Metrics struct {
	Timestamp  int64   `json:"ts"`
	CPUCount   int     `json:"cpu_count"`
	CPUUsedPct float64 `json:"cpu_used_pct"`
	MemTotal   uint64  `json:"mem_total"`
	MemUsed    uint64  `json:"mem_used"`
	DiskUsed   uint64  `json:"disk_used"`
	DiskTotal  uint64  `json:"disk_total"`
}

// Metrics reads the capsule's resource usage as envd sees it.
func (c *Client) Metrics(ctx context.Context) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return Metrics{}, err
	}
	res, err := c.do(req)
	if err != nil {
		return Metrics{}, fmt.Errorf("GET /metrics: %w", err)
	}
	defer res.Body.Close()
	var m Metrics
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		return Metrics{}, fmt.Errorf("decode /metrics: %w", err)
	}
	return m, nil
}

func (c *Client) filesURL(path, user string) string {
	q := url.Values{"path": {path}}
	if user != "" {
		q.Set("username", user)
	}
	return c.base + "/files?" + q.Encode()
}

// Download opens path for reading as user (empty: envd's default user).
// The caller closes the body.
func (c *Client) Download(ctx context.Context, path, user string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.filesURL(path, user), nil)
	if err != nil {
		return nil, err
	}
	res, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", path, err)
	}
	return res.Body, nil
}

// Upload writes body to path as user, creating parents.
func (c *Client) Upload(ctx context.Context, path, user string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.filesURL(path, user), body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := c.do(req)
	if err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return res.Body.Close()
}
