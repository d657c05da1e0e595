// Package e2bapi is the E2B-compatible REST API of the control plane (docs/e2b.md): the routes the
// unmodified E2B SDKs call with E2B_API_URL pointing at Wrenn, as thin handlers over the capsules
// service. Sandboxes are capsules; their ids are the capsule ids without the "cl-" prefix; the same API
// keys work here and on /v1. The facade keeps E2B's conventions: X-API-KEY auth, {code, message} error
// bodies, an absolute lifetime per sandbox (timeout), metadata and env vars at create.
package e2bapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ratelimit"
)

// Defaults and limits of the facade (docs/e2b.md).
const (
	// DefaultTimeout is a sandbox's lifetime when create or connect names none (E2B's default).
	DefaultTimeout = 300 * time.Second
	// MaxTimeout is the longest lifetime a create, connect or setTimeout may ask for.
	MaxTimeout = 24 * time.Hour
	// DefaultExpireInterval is how often sandboxes whose lifetime ended are killed or paused.
	DefaultExpireInterval = 5 * time.Second
	// clientID fills the deprecated, required clientID field of E2B's schemas.
	clientID = "wrenn"
)

// Prefixes are the paths the facade owns: E2B's API roots (docs/e2b.md). Paths under them that the
// facade does not implement answer 501.
var Prefixes = []string{"/sandboxes", "/v2/sandboxes", "/snapshots", "/templates", "/v2/templates", "/v3/templates", "/volumes", "/volumecontent", "/secrets"}

// Owns reports whether path belongs to the facade.
func Owns(path string) bool {
	for _, p := range Prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// Config holds the dependencies of a Service.
type Config struct {
	Capsules *capsules.Service
	Authn    *auth.Authenticator
	// Domain is the port proxy's domain ({port}-{id}.<Domain>), returned to the SDK as `domain` so that
	// getHost(port) names a host the proxy serves. A domain without a port gets the port of the API
	// request's Host (the proxy shares the API's listener). Empty: null, the client's E2B_DOMAIN decides.
	Domain string
	Log    *slog.Logger
	// ExpireInterval is how often ended lifetimes are enforced (DefaultExpireInterval when ≤ 0).
	ExpireInterval time.Duration
}

// Service serves the facade and enforces sandbox lifetimes.
type Service struct {
	caps     *capsules.Service
	authn    *auth.Authenticator
	domain   string
	log      *slog.Logger
	interval time.Duration
	mux      *http.ServeMux
}

// New returns a Service; Capsules and Authn are required.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Capsules == nil:
		return nil, errors.New("e2bapi: Config.Capsules is required")
	case cfg.Authn == nil:
		return nil, errors.New("e2bapi: Config.Authn is required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ExpireInterval <= 0 {
		cfg.ExpireInterval = DefaultExpireInterval
	}
	s := &Service{caps: cfg.Capsules, authn: cfg.Authn, domain: strings.Trim(strings.ToLower(cfg.Domain), "."),
		log: cfg.Log, interval: cfg.ExpireInterval, mux: http.NewServeMux()}
	s.routes()
	return s, nil
}

// handler is a facade handler: it gets the caller's team and returns its error.
type handler func(w http.ResponseWriter, r *http.Request, c caller) error

func (s *Service) routes() {
	h := func(pattern string, fn handler) { s.mux.Handle(pattern, s.authed(fn)) }
	h("POST /sandboxes", s.handleCreate)
	h("POST /v2/sandboxes", s.handleCreate)
	h("GET /sandboxes", s.handleListV1)
	h("GET /v2/sandboxes", s.handleList)
	h("GET /sandboxes/{id}", s.handleGet)
	h("DELETE /sandboxes/{id}", s.handleKill)
	h("POST /sandboxes/{id}/connect", s.handleConnect)
	h("POST /v2/sandboxes/{id}/connect", s.handleConnect)
	h("POST /sandboxes/{id}/resume", s.handleResume)
	h("POST /sandboxes/{id}/timeout", s.handleTimeout)
	h("POST /sandboxes/{id}/pause", s.handlePause)
	h("GET /sandboxes/{id}/metrics", s.handleMetrics)
	h("POST /sandboxes/{id}/snapshots", s.handleSnapshot)
	h("GET /snapshots", s.handleListSnapshots)
	h("DELETE /templates/{id}", s.handleDeleteSnapshot)
	// Everything else under the E2B roots (fork, network, refreshes, logs, template builds, volumes,
	// secrets) is not implemented: 501 with E2B's error body, after authentication.
	s.mux.Handle("/", s.authed(func(http.ResponseWriter, *http.Request, caller) error {
		return apierr.New(http.StatusNotImplemented, "not_implemented", "this E2B API operation is not supported by Wrenn (see docs/e2b.md)")
	}))
}

// ServeHTTP serves a request for a path Owns accepts.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// caller is the authenticated caller of a facade request.
type caller struct {
	id   auth.Identity
	team uuid.UUID
}

// authed authenticates r like /v1's KEY|JWT routes (X-API-KEY, or a Bearer JWT with a team) and answers
// failures with E2B's error body.
func (s *Service) authed(fn handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := auth.WithClientIP(r.Context(), ratelimit.ClientIP(r))
		r = r.WithContext(ctx)
		id, err := s.authn.Authenticate(ctx, auth.KindKeyOrJWT, r.URL.Path, auth.CredentialsFrom(r))
		if err == nil {
			var team uuid.UUID
			team, err = capsules.TeamOf(id)
			if err == nil {
				r = r.WithContext(auth.WithIdentity(ctx, id))
				err = fn(w, r, caller{id: id, team: team})
			}
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// errorBody is E2B's error body.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// writeError answers err as E2B's {code, message}: code is the HTTP status (the SDK branches on it).
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := apierr.From(err)
	if e.Status >= 500 {
		s.log.Error("e2b api request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", err)
	}
	h := w.Header()
	if d := e.RetryAfter(); d > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	h.Set("X-Content-Type-Options", "nosniff")
	writeJSON(w, e.Status, errorBody{Code: e.Status, Message: e.Message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"code":500,"message":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// decodeBody reads an optional JSON body into dst; unknown fields are ignored (the SDKs send fields of
// later API versions).
func decodeBody(r *http.Request, dst any) error {
	return apierr.DecodeOptionalJSON(r, apierr.DefaultBodyLimit, dst)
}

// Run enforces sandbox lifetimes until ctx ends: every interval, running sandboxes whose end passed are
// killed, or paused when created with autoPause.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			s.expire(ctx)
		}
	}
}
