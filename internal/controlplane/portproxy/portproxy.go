// Package portproxy is the control plane's port proxy (docs/api.md): a
// request whose Host is {port}-{capsule_id}.{domain}, or, on any host, that
// carries E2B's E2b-Sandbox-Id (and E2b-Sandbox-Port) headers — any method,
// WebSocket upgrades included — goes to TCP port of the capsule, through its
// host agent's /proxy/{capsule_id}/{port}/{path…} route. Port 49983 (envd)
// needs the capsule's envd access token in X-Access-Token
// (docs/security.md); other ports are open (capsule ids are unguessable)
// unless the capsule is secure: then they need its traffic access token.
package portproxy

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
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Store reads capsules (*store.Store implements it).
type Store interface {
	GetCapsuleByID(ctx context.Context, id uuid.UUID) (db.Capsule, error)
}

// EnvdPort is envd's port in every capsule.
const EnvdPort = 49983

// tokenHeader carries envd's access token.
const tokenHeader = "X-Access-Token"

// Traffic token headers: Wrenn's and the E2B SDK's (docs/security.md).
const (
	trafficHeader    = "X-Wrenn-Traffic-Token"
	e2bTrafficHeader = "E2b-Traffic-Access-Token"
)

// Tokens opens capsules' envd and traffic access tokens (*capsules.Service implements it).
type Tokens interface {
	EnvdToken(c db.Capsule) (string, error)
	// TrafficToken is a secure capsule's traffic access token ("" when c is not secure).
	TrafficToken(c db.Capsule) (string, error)
}

// Transports reach host agents: the agent's base URL (https://ip:port) and
// a RoundTripper speaking mutual TLS to it. For WebSocket upgrades the
// RoundTripper must be able to fall back to HTTP/1.1 (an *http.Transport
// with ForceAttemptHTTP2 does so by itself).
type Transports interface {
	Transport(ctx context.Context, hostID uuid.UUID) (baseURL string, rt http.RoundTripper, err error)
}

// Config configures a Proxy.
type Config struct {
	Store      Store
	Transports Transports
	// Tokens opens access tokens; nil: port 49983 and secure capsules are never proxied (401).
	Tokens Tokens
	// Domain is the proxy's parent domain: {port}-{capsule_id}.{Domain}.
	// Empty disables the proxy (Middleware passes everything on).
	Domain string
	Log    *slog.Logger
}

// Proxy routes capsule port requests.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	suffix string // "." + lower-case domain
}

// New returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Store == nil || cfg.Transports == nil {
		return nil, errors.New("portproxy: Store and Transports are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	domain := strings.Trim(strings.ToLower(cfg.Domain), ".")
	p := &Proxy{cfg: cfg, log: cfg.Log}
	if domain != "" {
		p.suffix = "." + domain
	}
	return p, nil
}

// Middleware serves the requests route assigns to a capsule port and
// hands every other request to next. Put it in front of authentication.
func (p *Proxy) Middleware(next http.Handler) http.Handler {
	if p.suffix == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, ok, ae := p.route(r)
		switch {
		case !ok:
			next.ServeHTTP(w, r)
		case ae != nil:
			writeError(w, ae)
		default:
			p.serve(w, r, t)
		}
	})
}

// E2B's routing headers (docs/api.md, Port proxy): the E2B SDKs send them on
// every request to envd, whatever the URL, so that E2B_SANDBOX_URL can point
// at a single address.
const (
	sandboxIDHeader   = "E2b-Sandbox-Id"
	sandboxPortHeader = "E2b-Sandbox-Port"
)

// target is where a proxied request goes: port of capsule id. e2b marks a
// request addressed the E2B way (its headers, or a dash-free id in the host
// name): it is answered by E2B's conventions where they differ from ours.
type target struct {
	port int
	id   uuid.UUID
	e2b  bool
}

// route resolves which capsule port r is for (docs/api.md, Port proxy):
//  1. Host {port}-{capsule_id}.{domain} (a port in Host is ignored);
//  2. else an E2b-Sandbox-Id header (any Host): that capsule, port from
//     E2b-Sandbox-Port, envd's port when absent.
//
// ok is false when r is for neither (the API's request). ae is set when r
// is for the proxy but names no valid port or capsule id.
func (p *Proxy) route(r *http.Request) (t target, ok bool, ae *apierr.Error) {
	if label, ok := p.capsuleLabel(r.Host); ok {
		t.port, t.id, ae = parseLabel(label)
		_, rawID, _ := strings.Cut(label, "-")
		t.e2b = !strings.HasPrefix(rawID, string(ids.Capsule))
		return t, true, ae
	}
	rawID := r.Header.Get(sandboxIDHeader)
	if rawID == "" {
		return target{}, false, nil
	}
	t.port, t.id, ae = parseHeaders(rawID, r.Header.Values(sandboxPortHeader))
	t.e2b = true
	return t, true, ae
}

// capsuleLabel returns the first label of host when host is
// <label>.<domain> and the label has the shape <port>-cl….
func (p *Proxy) capsuleLabel(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	label, ok := strings.CutSuffix(host, p.suffix)
	if !ok || label == "" || strings.Contains(label, ".") {
		return "", false
	}
	_, id, ok := strings.Cut(label, "-")
	return label, ok && strings.HasPrefix(id, dashFreePrefix)
}

// dashFreePrefix starts a capsule id in the dash-free form E2B host names
// need (cl0k4x… for cl-0k4x…; docs/e2b.md).
var dashFreePrefix = strings.TrimSuffix(string(ids.Capsule), "-")

// parseSandboxID accepts a capsule id in its API form (cl-…) or in the
// dash-free form (cl…), both lower case.
func parseSandboxID(s string) (uuid.UUID, error) {
	if rest, ok := strings.CutPrefix(s, dashFreePrefix); ok && !strings.HasPrefix(rest, "-") {
		s = string(ids.Capsule) + rest
	}
	return ids.Capsule.Parse(s)
}

// parsePort accepts 1-65535 in decimal, no sign, no leading zero.
func parsePort(s string) (int, *apierr.Error) {
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != s {
		return 0, apierr.InvalidRequestf("invalid port %q: want 1-65535", s)
	}
	return port, nil
}

// parseLabel splits a capsule label, <port>-<capsule_id>, into a port and
// the capsule's id.
func parseLabel(label string) (int, uuid.UUID, *apierr.Error) {
	portStr, rawID, _ := strings.Cut(label, "-")
	port, ae := parsePort(portStr)
	if ae != nil {
		return 0, uuid.UUID{}, ae
	}
	id, err := parseSandboxID(rawID)
	if err != nil {
		return 0, uuid.UUID{}, apierr.InvalidRequest("invalid sandbox ID")
	}
	return port, id, nil
}

// parseHeaders reads E2B's routing headers: the sandbox id and the values of
// E2b-Sandbox-Port (none: envd's port; more than one: refused).
func parseHeaders(rawID string, ports []string) (int, uuid.UUID, *apierr.Error) {
	id, err := parseSandboxID(strings.TrimSpace(rawID))
	if err != nil {
		return 0, uuid.UUID{}, apierr.InvalidRequest("invalid sandbox ID in " + sandboxIDHeader)
	}
	port := EnvdPort
	switch len(ports) {
	case 0:
	case 1:
		var ae *apierr.Error
		if port, ae = parsePort(strings.TrimSpace(ports[0])); ae != nil {
			return 0, uuid.UUID{}, ae
		}
	default:
		return 0, uuid.UUID{}, apierr.InvalidRequest("more than one " + sandboxPortHeader + " header")
	}
	return port, id, nil
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, t target) {
	port, id := t.port, t.id
	portStr, rawID := strconv.Itoa(port), ids.Capsule.Format(id)
	c, err := p.cfg.Store.GetCapsuleByID(r.Context(), id)
	switch {
	case t.e2b && (store.IsNotFound(err) || err == nil && c.Status != "running"):
		// E2B's SDKs read a 502 with a plain-text body as "the sandbox is not
		// running" (isRunning() → false, calls fail as timeouts; docs/e2b.md).
		http.Error(w, "sandbox "+rawID+" is not running", http.StatusBadGateway)
		return
	case store.IsNotFound(err):
		writeError(w, apierr.NotFound("sandbox not found"))
		return
	case err != nil:
		p.log.Error("port proxy: read capsule", "capsule_id", rawID, "error", err)
		writeError(w, apierr.Internal(err))
		return
	case c.Status != "running" || c.HostID == nil:
		writeError(w, apierr.HostUnavailable(fmt.Sprintf("sandbox is not running (status: %s)", c.Status)))
		return
	}
	if ae := p.checkAccess(r, c, port); ae != nil {
		writeError(w, ae)
		return
	}
	base, rt, err := p.cfg.Transports.Transport(r.Context(), *c.HostID)
	if err != nil {
		var ae *apierr.Error
		if !errors.As(err, &ae) {
			ae = apierr.HostUnavailable("sandbox host is not reachable").WithCause(err)
		}
		writeError(w, ae)
		return
	}
	target, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil || target.Host == "" {
		p.log.Error("port proxy: bad agent URL", "host_id", c.HostID.String(), "url", base, "error", err)
		writeError(w, apierr.HostUnavailable("sandbox host is not reachable"))
		return
	}
	prefix := "/proxy/" + ids.Capsule.Format(id) + "/" + portStr
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			pr.Out.URL.Path = target.Path + prefix + pr.In.URL.Path
			pr.Out.URL.RawPath = ""
			if raw := pr.In.URL.RawPath; raw != "" {
				pr.Out.URL.RawPath = target.Path + prefix + raw
			}
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     rt,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client went away
			}
			p.log.Warn("port proxy: agent not reachable", "host_id", c.HostID.String(), "capsule_id", rawID, "error", err)
			writeError(w, apierr.HostUnavailable("sandbox host is not reachable"))
		},
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	rp.ServeHTTP(w, r)
}

// writeError answers with docs/api.md error body. Unlike apierr.Write it logs
// nothing (callers log what is the platform's fault): a paused capsule or a
// bad port is the client's business.
func writeError(w http.ResponseWriter, e *apierr.Error) {
	body, _ := json.Marshal(e)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(body, '\n'))
}

// checkEnvdToken requires capsule c's envd access token on a request for
// envd's port (docs/security.md), compared in constant time.
func (p *Proxy) checkEnvdToken(r *http.Request, c db.Capsule) *apierr.Error {
	unauthorized := apierr.Unauthorized("port " + strconv.Itoa(EnvdPort) + " needs the sandbox's envd access token in " + tokenHeader)
	if p.cfg.Tokens == nil {
		return unauthorized
	}
	want, err := p.cfg.Tokens.EnvdToken(c)
	if err != nil {
		p.log.Error("port proxy: envd token", "capsule_id", ids.Capsule.Format(c.ID), "error", err)
		return apierr.Internal(err)
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(r.Header.Get(tokenHeader)), []byte(want)) != 1 {
		return unauthorized
	}
	return nil
}

// checkAccess requires what a request for port of capsule c needs (docs/security.md): envd's access
// token on envd's port, the traffic access token on every other port of a secure capsule.
func (p *Proxy) checkAccess(r *http.Request, c db.Capsule, port int) *apierr.Error {
	if port == EnvdPort {
		return p.checkEnvdToken(r, c)
	}
	if !c.Secure {
		return nil
	}
	unauthorized := apierr.Unauthorized("this sandbox is secure: its ports need the sandbox's traffic access token in " + trafficHeader)
	if p.cfg.Tokens == nil {
		return unauthorized
	}
	want, err := p.cfg.Tokens.TrafficToken(c)
	if err != nil {
		p.log.Error("port proxy: traffic token", "capsule_id", ids.Capsule.Format(c.ID), "error", err)
		return apierr.Internal(err)
	}
	got := r.Header.Get(trafficHeader)
	if got == "" {
		got = r.Header.Get(e2bTrafficHeader)
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return unauthorized
	}
	return nil
}
