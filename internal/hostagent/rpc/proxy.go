package rpc

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// ProxyPrefix is where the port proxy is mounted on the agent's listener:
// /proxy/{sandbox_id}/{port}/{path…} reaches TCP port of the capsule
// (docs/api.md).
const ProxyPrefix = "/proxy/"

// hostOnly are envd's endpoints only the agent may call; the proxy never
// forwards them.
var hostOnly = map[string]bool{"/init": true, "/snapshot/prepare": true}

var portRe = regexp.MustCompile(`^[0-9]{1,5}$`)

// Capsules is what the port proxy needs of the agent: a capsule's status and
// host-side address. Looking a capsule up is not activity: proxied traffic
// never keeps a capsule from pausing for inactivity.
type Capsules interface {
	Info(id string) (capsules.Info, error)
}

// Proxy forwards HTTP requests, WebSocket upgrades included, to ports of
// running capsules. It tracks the connections it holds per capsule so they
// can be closed when the capsule stops serving (Drain).
type Proxy struct {
	log *slog.Logger
	rp  *httputil.ReverseProxy
	tr  *http.Transport

	mu    sync.Mutex
	conns map[string]map[*context.CancelFunc]struct{}
}

// NewProxy returns a port proxy; Handler serves it.
func NewProxy(log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{log: log, conns: map[string]map[*context.CancelFunc]struct{}{}}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	p.tr = &http.Transport{
		Proxy:               nil,
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:   rewrite,
		Transport: p.tr,
		// Stream as the capsule writes (server-sent events, long polls).
		FlushInterval: -1,
		ErrorHandler:  p.upstreamError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

// target is where one request goes, carried in its context to Rewrite.
type target struct {
	addr string // capsule ip:port
	path string // escaped path inside the capsule
}

type targetKey struct{}

// Handler serves ProxyPrefix, looking capsules up in c.
func (p *Proxy) Handler(c Capsules) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(c, w, r) })
}

// Wrap serves paths under ProxyPrefix itself and passes the rest to next.
// Mount the proxy this way rather than on an http.ServeMux: the mux
// redirects paths that are not clean ("//", ".."), which would send the
// capsule's clients to the agent's own URL space.
func (p *Proxy) Wrap(c Capsules, next http.Handler) http.Handler {
	h := p.Handler(c)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ProxyPrefix) {
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (p *Proxy) serve(c Capsules, w http.ResponseWriter, r *http.Request) {
	id, portStr, rest := splitProxyPath(r.URL.EscapedPath())
	port, ok := parsePort(portStr)
	if !ok {
		proxyError(w, apierr.InvalidRequestf("invalid port %q: want 1-65535", portStr))
		return
	}
	decoded, err := url.PathUnescape(rest)
	if err != nil {
		proxyError(w, apierr.InvalidRequest("invalid path: bad percent-encoding"))
		return
	}
	if port == envdclient.Port && hostOnly[path.Clean(decoded)] {
		proxyError(w, apierr.Forbidden("envd's host-only endpoints are not proxied"))
		return
	}
	info, err := c.Info(id)
	if err != nil || info.Status != capsules.StatusRunning || info.HostIP == "" {
		proxyError(w, apierr.HostUnavailable(notRunning(id, info, err)))
		return
	}
	// envd's port needs the capsule's access token (docs/security.md); envd
	// checks it too, this keeps unauthenticated traffic off envd entirely.
	if port == envdclient.Port && info.EnvdAccessToken != "" &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get(envdclient.TokenHeader)), []byte(info.EnvdAccessToken)) != 1 {
		proxyError(w, apierr.Unauthorized("missing or invalid "+envdclient.TokenHeader+" for port 49983"))
		return
	}
	ctx, done := p.track(r.Context(), id)
	defer done()
	ctx = context.WithValue(ctx, targetKey{}, target{
		addr: net.JoinHostPort(info.HostIP, strconv.Itoa(port)),
		path: rest,
	})
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func notRunning(id string, info capsules.Info, err error) string {
	if err != nil {
		return fmt.Sprintf("sandbox %s not found on this host", id)
	}
	return fmt.Sprintf("sandbox %s is not running (status: %s)", id, info.Status)
}

// parsePort returns the port s names if it is 1-65535 in at most five
// decimal digits.
func parsePort(s string) (int, bool) {
	port, err := strconv.Atoi(s)
	return port, portRe.MatchString(s) && err == nil && port >= 1 && port <= 65535
}

// splitProxyPath splits "/proxy/{id}/{port}{rest}" (escaped); rest is at
// least "/".
func splitProxyPath(p string) (id, port, rest string) {
	p = strings.TrimPrefix(p, ProxyPrefix)
	id, p, _ = strings.Cut(p, "/")
	port, rest, found := strings.Cut(p, "/")
	if unescaped, err := url.PathUnescape(id); err == nil {
		id = unescaped
	}
	if !found {
		return id, port, "/"
	}
	return id, port, "/" + rest
}

// rewrite points the outbound request at the capsule, keeping path, query
// and the Host the client asked for. X-Forwarded-* of the inbound request
// (set by the control plane) are kept and extended.
func rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(targetKey{}).(target)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = t.addr
	pr.Out.URL.Path, _ = url.PathUnescape(t.path)
	pr.Out.URL.RawPath = t.path
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	pr.Out.Host = pr.In.Host
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header.Values(h); len(v) > 0 {
			pr.Out.Header[h] = v
		}
	}
	if pr.Out.Header.Get("X-Forwarded-Host") == "" {
		pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
	}
	if pr.Out.Header.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if pr.In.TLS != nil {
			proto = "https"
		}
		pr.Out.Header.Set("X-Forwarded-Proto", proto)
	}
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		if prior := pr.Out.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		pr.Out.Header.Set("X-Forwarded-For", ip)
	}
}

// upstreamError answers a request the capsule did not answer: 502 when the
// port could not be reached or the answer broke off, nothing when the client
// left, 503 when the capsule stopped serving meanwhile (Drain).
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(context.Cause(r.Context()), errDrained):
		proxyError(w, apierr.HostUnavailable("sandbox stopped serving (pause or destroy)"))
	case r.Context().Err() != nil:
		// The client went away; nobody reads an answer.
	default:
		t, _ := r.Context().Value(targetKey{}).(target)
		p.log.Debug("proxy: capsule port not reachable", "target", t.addr, "error", err)
		var op *net.OpError
		msg := fmt.Sprintf("the sandbox did not answer on %s: %v", t.addr, err)
		if errors.As(err, &op) && op.Op == "dial" {
			msg = fmt.Sprintf("cannot connect to %s in the sandbox: %v", t.addr, op.Err)
		}
		proxyError(w, apierr.AgentError(msg))
	}
}

var errDrained = errors.New("sandbox stopped serving")

// proxyError answers with the API's error body (docs/api.md). Unlike apierr.Write
// it does not log: a port nobody listens on is the client's business, not
// an agent failure.
func proxyError(w http.ResponseWriter, e *apierr.Error) {
	body, _ := json.Marshal(e)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

// track registers a proxied request of capsule id; done unregisters it.
func (p *Proxy) track(parent context.Context, id string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	stop := context.CancelFunc(func() { cancel(errDrained) })
	key := &stop
	p.mu.Lock()
	if p.conns[id] == nil {
		p.conns[id] = map[*context.CancelFunc]struct{}{}
	}
	p.conns[id][key] = struct{}{}
	p.mu.Unlock()
	return ctx, func() {
		p.mu.Lock()
		delete(p.conns[id], key)
		if len(p.conns[id]) == 0 {
			delete(p.conns, id)
		}
		p.mu.Unlock()
		cancel(context.Canceled)
	}
}

// Drain closes every proxied connection of capsule id (requests in flight
// and upgraded WebSockets). The agent calls it when the capsule stops
// serving, before it is paused or destroyed.
func (p *Proxy) Drain(id string) {
	p.mu.Lock()
	conns := p.conns[id]
	delete(p.conns, id)
	p.mu.Unlock()
	for stop := range conns {
		(*stop)()
	}
	// Idle kept-alive connections to the capsule's address must go too: the next capsule may get the
	// same address, and a request sent on such a connection reaches nothing (connection reset).
	p.tr.CloseIdleConnections()
	if len(conns) > 0 {
		p.log.Debug("proxy: drained connections", "capsule_id", id, "count", len(conns))
	}
}

// Connections returns how many proxied requests of capsule id are open.
func (p *Proxy) Connections(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns[id])
}
