// Package httpapi is the control plane's HTTP plumbing shared by every API area: the router (request
// ids, method + path patterns, authentication kinds, the /v1/sandboxes alias, JSON 404/405), JSON
// responses and WebSocket acceptance with header or first-message authentication. The areas
// (accounts, fleet, capsules, guest, audit) register their handlers on a Router;
// internal/controlplane/daemon assembles them.
package httpapi

import (
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ratelimit"
)

// KindNone marks a public route (no credentials).
const KindNone auth.Kind = 0

// Route is one registered method + path, for the OpenAPI drift test and the docs.
type Route struct {
	Method    string
	Pattern   string // ServeMux pattern path, e.g. /v1/capsules/{id}/exec
	Kind      auth.Kind
	WebSocket bool
	// Stream marks an upload route whose body may take longer than the body-read deadline.
	Stream bool
}

// Router is an http.Handler that routes by method and path pattern (net/http ServeMux syntax) and
// authenticates each route for its kind before calling the handler.
type Router struct {
	mux         *http.ServeMux
	authn       *auth.Authenticator
	routes      []Route
	bodyTimeout time.Duration
}

// DefaultBodyTimeout is how long a request of a route other than a WebSocket or an upload stream may
// take to send its body (docs/security.md, "Limits").
const DefaultBodyTimeout = 30 * time.Second

// NewRouter returns an empty router whose authenticated routes are checked by authn.
func NewRouter(authn *auth.Authenticator) *Router {
	return &Router{mux: http.NewServeMux(), authn: authn, bodyTimeout: DefaultBodyTimeout}
}

// SetBodyTimeout changes the body-read deadline of later registered routes (≤ 0: none). The server's
// ReadTimeout stays 0 so that WebSockets and uploads are not cut: the deadline is set per request.
func (rt *Router) SetBodyTimeout(d time.Duration) { rt.bodyTimeout = d }

// Authenticator returns the authenticator routes are checked with (WebSocket handlers need it).
func (rt *Router) Authenticator() *auth.Authenticator { return rt.authn }

// Handle registers h for method and pattern. kind KindNone is public; any other kind runs the
// authenticator first and passes the auth.Identity in the request context (see Identity).
func (rt *Router) Handle(method, pattern string, kind auth.Kind, h http.HandlerFunc) {
	rt.handle(Route{Method: method, Pattern: pattern, Kind: kind}, h)
}

// HandleStream is Handle for an upload route: its body is not bound by the body-read deadline.
func (rt *Router) HandleStream(method, pattern string, kind auth.Kind, h http.HandlerFunc) {
	rt.handle(Route{Method: method, Pattern: pattern, Kind: kind, Stream: true}, h)
}

func (rt *Router) handle(route Route, h http.HandlerFunc) {
	var handler http.Handler = h
	if route.Kind != KindNone {
		handler = rt.authn.Middleware(route.Kind)(h)
	}
	if !route.Stream && rt.bodyTimeout > 0 {
		handler = bodyDeadline(rt.bodyTimeout, handler)
	}
	rt.mux.Handle(route.Method+" "+route.Pattern, handler)
	rt.routes = append(rt.routes, route)
}

// bodyDeadline gives a request with a body d to send it: the connection's read deadline is set
// before next runs and cleared once the body is read (or closed), so that a long-running handler
// (exec, downloads) is not cancelled by it. A slow body fails to read and the connection is closed.
func bodyDeadline(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
			next.ServeHTTP(w, r) // not a net/http server connection (tests with recorders)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody clears the connection's read deadline when its body ends (or is closed).
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	cleared bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		// Only the end of the body: after a timeout the deadline stays, so that the server's discard
		// of the unread rest fails at once and the connection is closed.
		b.clear()
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	b.clear()
	return b.ReadCloser.Close()
}

func (b *deadlineBody) clear() {
	if !b.cleared {
		b.cleared = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// HandleWS registers a WebSocket route (GET). h authenticates itself through AcceptWebSocket, because
// a WebSocket may authenticate with its first message instead of headers.
func (rt *Router) HandleWS(pattern string, kind auth.Kind, h http.HandlerFunc) {
	rt.mux.Handle(http.MethodGet+" "+pattern, h)
	rt.routes = append(rt.routes, Route{Method: http.MethodGet, Pattern: pattern, Kind: kind, WebSocket: true})
}

// CapsulePrefixes are the two prefixes of the capsule subtree (docs/api.md).
var CapsulePrefixes = []string{"/v1/capsules", "/v1/sandboxes"}

// HandleCapsule registers h under /v1/capsules+sub and its alias /v1/sandboxes+sub (sub is "" or
// starts with "/", e.g. "/{id}/exec").
func (rt *Router) HandleCapsule(method, sub string, kind auth.Kind, h http.HandlerFunc) {
	for _, p := range CapsulePrefixes {
		rt.Handle(method, p+sub, kind, h)
	}
}

// HandleCapsuleStream is HandleStream under both capsule prefixes.
func (rt *Router) HandleCapsuleStream(method, sub string, kind auth.Kind, h http.HandlerFunc) {
	for _, p := range CapsulePrefixes {
		rt.HandleStream(method, p+sub, kind, h)
	}
}

// HandleCapsuleWS is HandleWS under both capsule prefixes.
func (rt *Router) HandleCapsuleWS(sub string, kind auth.Kind, h http.HandlerFunc) {
	for _, p := range CapsulePrefixes {
		rt.HandleWS(p+sub, kind, h)
	}
}

// Match returns the route pattern r is served by, without the method (e.g.
// "/v1/capsules/{id}/exec"), or "" when no route matches (404 and 405 answers). Metrics label requests
// with it.
func (rt *Router) Match(r *http.Request) string {
	_, pattern := rt.mux.Handler(r)
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// Routes returns every registered route in registration order.
func (rt *Router) Routes() []Route { return slices.Clone(rt.routes) }

var probeMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions,
}

// RequestIDHeader is the response header carrying the id the router gives each request.
const RequestIDHeader = "X-Request-Id"

// ServeHTTP routes r. Every request gets a new id, answered in X-Request-Id and put in the context
// (apierr.RequestID) so that errors are logged under it and agent errors quote it. Unknown paths
// answer 404 not_found and known paths with another method 405 method_not_allowed, both with docs/api.md
// error body.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := newRequestID()
	w.Header().Set(RequestIDHeader, id)
	r = r.WithContext(auth.WithClientIP(apierr.WithRequestID(r.Context(), id), ratelimit.ClientIP(r)))
	if _, pattern := rt.mux.Handler(r); pattern != "" {
		rt.mux.ServeHTTP(w, r)
		return
	}
	var allowed []string
	for _, m := range probeMethods {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := rt.mux.Handler(probe); pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		apierr.Write(w, r, apierr.MethodNotAllowed("method "+r.Method+" is not allowed on "+r.URL.Path))
		return
	}
	apierr.Write(w, r, apierr.NotFound("no route for "+r.URL.Path))
}

// newRequestID returns a random request id, "req-" and 26 base32 characters (130 bits).
func newRequestID() string {
	return "req-" + strings.ToLower(rand.Text())
}
