package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/apidocs"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/builds"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/channels"
	"github.com/wrenn/wrenn/internal/controlplane/e2bapi"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/guest"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/mail"
	"github.com/wrenn/wrenn/internal/controlplane/metrics"
	"github.com/wrenn/wrenn/internal/controlplane/portproxy"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/telemetry"
	"github.com/wrenn/wrenn/web"
)

// Server is an assembled control plane: its router and the services with background loops.
type Server struct {
	cfg     Config
	store   *store.Store
	fleet   *fleet.Service
	router  *httpapi.Router
	handler http.Handler
	loops   []func(context.Context) error
	// websockets are ended cleanly (1001) by a graceful shutdown.
	websockets *httpapi.WebSockets
}

// New opens the database (applying migrations), loads the secret and the internal CA, and builds every
// API area on one router.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	s, err := build(ctx, cfg, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

func build(ctx context.Context, cfg Config, st *store.Store) (*Server, error) {
	log := cfg.Log
	secret, err := serverSecret(ctx, st, cfg.Secret)
	if err != nil {
		return nil, err
	}
	signer, err := auth.NewSigner(secret)
	if err != nil {
		return nil, err
	}
	lookups := accounts.Lookups{Store: st}
	authn := auth.NewAuthenticator(signer, lookups, lookups)
	authn.SetRecheckInterval(cfg.WebSocketRecheck)
	rt := httpapi.NewRouter(authn)
	if cfg.BodyTimeout > 0 {
		rt.SetBodyTimeout(cfg.BodyTimeout)
	}

	var mailer mail.Mailer = mail.NewLog(log.With("component", "mail"))
	if cfg.SMTP.Host != "" {
		if mailer, err = mail.NewSMTP(cfg.SMTP); err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
	}
	ws := &httpapi.WebSockets{}
	meter := metrics.New(metrics.Config{Store: st, Version: cfg.Version, TeamLabels: cfg.MetricsTeamLabels, WebSockets: ws})
	fl, err := fleet.New(ctx, fleet.Config{
		Store: st, Signer: signer, Log: log.With("component", "fleet"),
		HeartbeatTimeout: cfg.HeartbeatTimeout, MonitorInterval: cfg.MonitorInterval,
		Pool: capsules.DesiredPool,
	})
	if err != nil {
		return nil, err
	}
	caps, err := capsules.New(capsules.Config{
		Store: st, Agents: meter.Agents(fl), Scheduler: fl, Log: log.With("component", "capsules"),
		ReconcileInterval: cfg.ReconcileInterval, StatsInterval: cfg.StatsInterval, PoolReportMaxAge: cfg.HeartbeatTimeout,
		Secret: derivedKey(secret, "capsules.envd-token"), Quota: cfg.Quota,
	})
	if err != nil {
		return nil, err
	}
	bld, err := builds.New(builds.Config{Store: st, Capsules: caps, Workers: cfg.BuildWorkers, Log: log.With("component", "builds")})
	if err != nil {
		return nil, err
	}
	gst, err := guest.New(guest.Config{Resolver: caps.Resolver, Log: log.With("component", "guest")})
	if err != nil {
		return nil, err
	}
	var providers []accounts.Provider
	if cfg.GitHub.ClientID != "" || cfg.GitHub.ClientSecret != "" {
		gh, err := accounts.NewGitHub(cfg.GitHub)
		if err != nil {
			return nil, err
		}
		providers = append(providers, gh)
	}
	acc, err := accounts.New(accounts.Config{
		Store: st, Signer: signer, Mailer: mailer, DashboardURL: cfg.DashboardURL,
		Log: log.With("component", "accounts"), Capsules: caps,
		Providers: providers, OAuthKey: derivedKey(secret, "accounts.oauth-state"), PublicURL: cfg.PublicURL,
	})
	if err != nil {
		return nil, err
	}
	aud, err := audit.New(audit.Config{Store: st, Log: log.With("component", "audit")})
	if err != nil {
		return nil, err
	}
	chs, err := channels.New(channels.Config{
		Store: st, Secret: derivedKey(secret, "channels"),
		AllowPrivate: cfg.ChannelsAllowPrivate, AllowedNets: cfg.ChannelsAllowedNets,
		Log: log.With("component", "channels"),
	})
	if err != nil {
		return nil, err
	}
	proxy, err := portproxy.New(portproxy.Config{Store: st, Transports: fl, Tokens: caps, Domain: cfg.ProxyDomain, Log: log.With("component", "portproxy")})
	if err != nil {
		return nil, err
	}

	e2b, err := e2bapi.New(e2bapi.Config{Capsules: caps, Authn: rt.Authenticator(), Domain: cfg.ProxyDomain,
		Log: log.With("component", "e2bapi")})
	if err != nil {
		return nil, err
	}

	rt.Handle(http.MethodGet, "/health", httpapi.KindNone, func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": cfg.Version})
	})
	dash := web.New()
	apidocs.Register(rt, dash)
	acc.Register(rt)
	fl.Register(rt)
	caps.Register(rt)
	gst.Register(rt)
	aud.Register(rt)
	chs.Register(rt)
	bld.Register(rt)

	// /metrics and /ready are operational endpoints beside the API (not in openapi.yaml); so is the
	// E2B-compatible API (E2B's paths and conventions, docs/e2b.md).
	ops := http.NewServeMux()
	ops.Handle("/metrics", telemetry.MetricsHandler(meter.Registry, cfg.MetricsToken))
	ops.Handle("/ready", telemetry.Ready(telemetry.Check{Name: "database", Fn: st.Pool().Ping}))
	api := meter.Middleware(rt)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if telemetry.IsProbe(r, "/metrics", "/ready") {
			ops.ServeHTTP(w, r)
			return
		}
		if e2bapi.Owns(r.URL.Path) {
			e2b.ServeHTTP(w, r)
			return
		}
		// The dashboard answers only GETs no API route matches, on its own paths (docs/dashboard.md).
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && rt.Match(r) == "" && dash.Claims(r.URL.Path) {
			dash.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})

	return &Server{
		cfg:        cfg,
		store:      st,
		fleet:      fl,
		router:     rt,
		handler:    proxy.Middleware(handler),
		loops:      []func(context.Context) error{fl.Run, caps.Run, acc.Run, chs.Run, bld.Run, e2b.Run},
		websockets: ws,
	}, nil
}

// Handler is the control plane's HTTP handler: the port proxy in front of the API router.
func (s *Server) Handler() http.Handler { return s.handler }

// Routes lists every API route (for the OpenAPI drift test).
func (s *Server) Routes() []httpapi.Route { return s.router.Routes() }

// Close drops the agent connections and releases the database pool.
func (s *Server) Close() {
	s.fleet.Close()
	s.store.Close()
}

// Serve runs the background loops and serves ln until ctx ends, then shuts down gracefully: requests
// in flight get up to 10 s, open WebSockets are closed with 1001 (going away) and their handlers
// waited for within the same 10 s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// No ReadTimeout: it would cut WebSockets, uploads and port-proxied streams; bodies of the other
	// routes get a deadline per request (httpapi.Router).
	srv := &http.Server{
		Handler:           s.handler,
		Protocols:         serverProtocols(),
		ReadHeaderTimeout: orDefault(s.cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       orDefault(s.cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext: func(net.Listener) context.Context {
			return httpapi.WithWebSockets(context.WithoutCancel(ctx), s.websockets)
		},
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, loop := range s.loops {
		g.Go(func() error {
			if err := loop(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		wsDone := make(chan error, 1)
		go func() { wsDone <- s.websockets.Shutdown(sctx) }()
		err := srv.Shutdown(sctx)
		if werr := <-wsDone; werr != nil {
			s.cfg.Log.Warn("websockets still open at shutdown", "count", s.websockets.Len(), "error", werr)
		}
		return err
	})
	return g.Wait()
}

// serverProtocols are HTTP/1.1 and cleartext HTTP/2 with prior knowledge
// (h2c): the control plane listens without TLS (a TLS-terminating proxy in
// front speaks h2 to clients), and the E2B SDKs' Connect clients may talk
// h2c to envd through the port proxy (docs/api.md, Port proxy).
func serverProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Run builds the control plane from cfg and serves cfg.Listen until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	cfg.Log.Info("wrenn-cp listening", "addr", ln.Addr().String(), "version", cfg.Version)
	return s.Serve(ctx, ln)
}

// Bootstrap creates the first platform admin with a password, its team and an API key.
func Bootstrap(ctx context.Context, dsn, email, password, name string) (accounts.BootstrapResult, error) {
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return accounts.BootstrapResult{}, err
	}
	defer st.Close()
	return accounts.Bootstrap(ctx, st, email, password, name)
}

// Migrate applies pending migrations.
func Migrate(ctx context.Context, dsn string) error {
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	st.Close()
	return nil
}
