package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/enroll"
	"github.com/wrenn/wrenn/internal/hostagent/images"
	"github.com/wrenn/wrenn/internal/hostagent/metrics"
	"github.com/wrenn/wrenn/internal/hostagent/network"
	"github.com/wrenn/wrenn/internal/hostagent/rpc"
	"github.com/wrenn/wrenn/internal/hostagent/runtime/gvisor"
	"github.com/wrenn/wrenn/internal/hostagent/suspend"
	"github.com/wrenn/wrenn/internal/telemetry"
)

// serverStopTimeout bounds the graceful stop of each HTTP server.
const serverStopTimeout = 5 * time.Second

// Server is an assembled host agent: enrolled, its network, runtime, images and capsules set up, its
// listeners open. Run serves and then releases all of it.
type Server struct {
	cfg      Config
	log      *slog.Logger
	enr      *enroll.Client // nil without a control plane
	nets     *network.Manager
	capsules *capsules.Agent
	inst     *metrics.Agent // capsules behind the metrics decorator: every API and shutdown call goes through it
	resumed  *telemetry.Gate
	api      *http.Server
	ln       net.Listener
	metrics  *http.Server // nil without Config.MetricsListen
	mln      net.Listener

	deleted    chan struct{} // closed when the control plane deleted this host
	terminated chan struct{} // closed shortly after a Terminate RPC destroyed every capsule

	// Set by Run's goroutine, read by its closers (same goroutine).
	stopping    bool // Run ended by its context (a signal): Config.OnShutdown applies
	dropNetwork bool // nothing runs any more: the networks kept for quick resumes and the nftables table go

	closers closers // released in reverse order of registration
}

// New enrolls with the control plane (first, so a bad token fails before anything is set up on the
// machine and stored credentials survive later failures), sets up the network, the gVisor runtime, the
// image store and the capsules, and opens the listeners. On failure it releases what it acquired.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	nameservers, err := capsuleDNS(cfg.DNS)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	s := &Server{cfg: cfg, log: log, deleted: make(chan struct{}), terminated: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = s.closers.closeAll(context.WithoutCancel(ctx)) // err is what the caller needs to know
		}
	}()

	if cfg.ControlPlane != "" {
		if s.enr, err = s.enroll(ctx); err != nil {
			return nil, err
		}
	}
	dns := make([]netip.Addr, 0, len(nameservers))
	for _, n := range nameservers {
		if a, err := netip.ParseAddr(n); err == nil {
			dns = append(dns, a)
		}
	}
	if s.nets, err = network.New(ctx, network.Config{
		Prefix: cfg.NetPrefix, Subnet: cfg.Subnet, DNS: dns, EgressAllow: cfg.EgressAllow,
		Log: log.With("component", "network"),
	}); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	s.closers.add("network rules", s.closeNetwork)
	rt, err := gvisor.New(gvisor.Config{
		Nameservers:         nameservers,
		Runsc:               cfg.Runsc,
		StateDir:            filepath.Join(cfg.DataDir, "runsc"),
		CapsulesDir:         filepath.Join(cfg.DataDir, "runtime"),
		Debug:               cfg.DebugRunsc,
		BufferedCheckpoints: cfg.BufferedCheckpoints,
		Log:                 log.With("component", "gvisor"),
	})
	if err != nil {
		return nil, fmt.Errorf("gvisor: %w", err)
	}
	versions := map[string]string{capsules.MetaAgentVersion: cfg.Version}
	if v := runscVersion(ctx, cfg.Runsc); v != "" {
		versions[capsules.MetaRunscVersion] = v
	} else {
		log.Warn("runsc does not tell its version; capsules report none", "runsc", cfg.Runsc)
	}
	imageStore := &images.Store{Dir: filepath.Join(cfg.DataDir, "images"), Log: log.With("component", "image")}
	s.closers.add("image store", func(context.Context) error { return imageStore.Close() })
	proxy := rpc.NewProxy(log.With("component", "proxy"))
	if s.capsules, err = capsules.New(ctx, capsules.Config{
		DataDir:          cfg.DataDir,
		Runtime:          rt,
		Network:          s.nets,
		Images:           imageStore,
		Envd:             cfg.Envd,
		MetricsEvery:     cfg.MetricsInterval,
		MetricsIdleEvery: cfg.MetricsIdleInterval,
		Versions:         versions,
		NetworkGrace:     cfg.NetworkGrace,
		Log:              log.With("component", "agent"),
		Stopping:         proxy.Drain,
		Pools:            cfg.Pools,
	}); err != nil {
		return nil, err
	}
	ag := s.capsules
	s.closers.add("capsules", func(context.Context) error { ag.Close(); return nil })

	s.inst = metrics.Wrap(ag)
	reg := telemetry.NewRegistry(metrics.Namespace, cfg.Version)
	reg.MustRegister(metrics.Collectors(s.inst, cfg.DataDir)...)
	s.resumed = telemetry.NewGate("resuming the capsules paused at the last shutdown")
	ready := append(metrics.ReadyChecks(metrics.ReadyConfig{
		Runsc: cfg.Runsc, StateDir: filepath.Join(cfg.DataDir, "runsc"), NetTable: cfg.NetPrefix,
	}), telemetry.Check{Name: "capsules", Fn: s.resumed.Check})
	probes := func(mux *http.ServeMux) {
		mux.Handle("GET /metrics", telemetry.MetricsHandler(reg, ""))
		mux.Handle("GET /health", telemetry.Health(cfg.Version))
		mux.Handle("GET /ready", telemetry.Ready(ready...))
	}

	api := rpc.New(terminating{Agent: s.inst, once: new(sync.Once), done: s.terminated}, log.With("component", "api"))
	mux := http.NewServeMux()
	path, h := api.Handler()
	mux.Handle(path, h)
	probes(mux)
	s.api = &http.Server{Handler: proxy.Wrap(ag, mux), ReadHeaderTimeout: 10 * time.Second}
	s.api.Protocols = new(http.Protocols)
	s.api.Protocols.SetHTTP1(true)
	if s.enr == nil {
		s.api.Protocols.SetUnencryptedHTTP2(true)
	} else {
		if s.api.TLSConfig, err = s.enr.TLSConfig(); err != nil {
			return nil, err
		}
		s.api.Protocols.SetHTTP2(true)
	}
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, err
	}
	s.closers.add("API listener", closeListener(s.ln))
	if cfg.MetricsListen != "" {
		if s.mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return nil, fmt.Errorf("-metrics-listen: %w", err)
		}
		s.closers.add("metrics listener", closeListener(s.mln))
		pmux := http.NewServeMux()
		probes(pmux)
		s.metrics = &http.Server{Handler: pmux, ReadHeaderTimeout: 10 * time.Second}
	}
	return s, nil
}

// Run serves until ctx ends (a signal), the control plane deletes the host, a Terminate RPC destroyed
// every capsule or a server fails. Then it stops everything in the reverse order of start: the startup
// resume, the heartbeats, the API (so no call races what follows), the capsules as Config.OnShutdown
// says (after a signal only), the metrics server, the listeners, the capsules core, the image store and,
// when nothing runs any more, the network rules. Call Run once; the Server is released when it returns.
func (s *Server) Run(ctx context.Context) error {
	log, cfg := s.log, s.cfg
	errc := make(chan error, 2)
	var serving sync.WaitGroup
	s.closers.add("HTTP servers", func(context.Context) error { serving.Wait(); return nil })
	if s.metrics != nil {
		log.Info("metrics listening (plain HTTP)", "addr", s.mln.Addr().String())
		serving.Go(func() { errc <- s.metrics.Serve(s.mln) })
		s.closers.add("metrics server", shutdownServer(s.metrics))
	}
	s.closers.add("capsules on shutdown", s.shutdownCapsules)
	if s.enr == nil {
		log.Info("wrenn-agent listening (plain HTTP, no control plane)", "addr", s.ln.Addr().String(), "data_dir", cfg.DataDir, "release", cfg.Version)
		serving.Go(func() { errc <- s.api.Serve(s.ln) })
	} else {
		log.Info("wrenn-agent listening (mutual TLS)", "addr", s.ln.Addr().String(), "host_id", s.enr.Credentials().HostID,
			"control_plane", cfg.ControlPlane, "data_dir", cfg.DataDir, "release", cfg.Version)
		serving.Go(func() { errc <- s.api.ServeTLS(s.ln, "", "") })
	}
	s.closers.add("API server", shutdownServer(s.api))
	if s.enr != nil {
		hctx, stopHeartbeats := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.enr.Run(hctx); err != nil {
				log.Error("heartbeats stopped", "error", err)
			}
		}()
		s.closers.add("heartbeats", func(context.Context) error { stopHeartbeats(); <-done; return nil })
	}
	// Capsules paused by the last shutdown come back once the API serves (readiness waits for them).
	rctx, stopResume := context.WithCancel(ctx)
	resumeDone := make(chan struct{})
	go func() {
		defer close(resumeDone)
		if _, err := suspend.ResumeRecorded(rctx, s.inst, cfg.DataDir, log); err != nil {
			log.Error("resume capsules paused at shutdown", "error", err)
		}
		s.resumed.Open()
	}()
	s.closers.add("startup resume", func(context.Context) error { stopResume(); <-resumeDone; return nil })

	var err error
	select {
	case <-ctx.Done():
		s.stopping = true
	case <-s.deleted:
		log.Info("host deleted by the control plane: shutting down")
	case <-s.terminated:
		log.Info("terminated: every capsule destroyed")
		s.dropNetwork = true
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	return errors.Join(err, s.closers.closeAll(context.WithoutCancel(ctx)))
}

// shutdownCapsules applies Config.OnShutdown to the running capsules when Run stops for a signal. When
// none is left running (pause mode, every pause succeeded) the network rules go too.
func (s *Server) shutdownCapsules(ctx context.Context) error {
	if !s.stopping {
		return nil
	}
	log := s.log
	if s.cfg.OnShutdown != suspend.Pause {
		log.Info("shutting down; capsules keep running")
		return nil
	}
	log.Info("shutting down; pausing running capsules")
	start := time.Now()
	paused, err := suspend.PauseRunning(ctx, s.inst, s.cfg.DataDir, log)
	if err != nil {
		log.Error("some capsules could not be paused and keep running", "error", err)
	}
	log.Info("capsules paused; they resume at the next start", "count", len(paused), "took", time.Since(start).Round(time.Millisecond))
	// Nothing runs any more: the next start sets up networks again for what it resumes.
	s.dropNetwork = err == nil
	return nil
}

// closeNetwork removes the agent's network rules when nothing runs any more; running capsules keep
// theirs.
func (s *Server) closeNetwork(ctx context.Context) error {
	if !s.dropNetwork {
		s.nets.Detach() // the rules stay for the capsules that run on
		return nil
	}
	if err := s.nets.Close(ctx); err != nil {
		s.log.Warn("remove network rules", "error", err)
	}
	return nil
}

// enroll registers the agent with the control plane (or loads its stored credentials) and returns the
// client that heartbeats.
func (s *Server) enroll(ctx context.Context) (*enroll.Client, error) {
	c := s.cfg
	addr := c.Advertise
	if addr == "" {
		addr = c.Listen
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, err
	}
	specs, err := enroll.DetectSpecs(c.DataDir)
	if err != nil {
		return nil, fmt.Errorf("machine specs: %w", err)
	}
	enr, err := enroll.New(enroll.Config{
		ControlPlaneURL:   c.ControlPlane,
		RegistrationToken: c.RegistrationToken,
		Address:           addr,
		StateFile:         filepath.Join(c.DataDir, "credentials.json"),
		Specs:             specs,
		Log:               s.log.With("component", "enroll"),
		PauseAll:          s.pauseAll,
		Pools:             s.poolReport,
		ApplyPools:        s.applyPools,
		OnDeleted:         func() { close(s.deleted) },
		HeartbeatInterval: c.HeartbeatInterval,
	})
	if err != nil {
		if c.Advertise == "" {
			return nil, fmt.Errorf("%w (set -advertise)", err)
		}
		return nil, fmt.Errorf("-advertise: %w", err)
	}
	if _, err := enr.Enroll(ctx); err != nil {
		return nil, err
	}
	return enr, nil
}

// pauseAll is the heartbeats' reaction to a lost control plane. Heartbeats start in Run, after New set
// s.capsules; before that there is nothing to pause.
func (s *Server) pauseAll(ctx context.Context) error {
	if s.capsules == nil {
		return nil
	}
	return s.capsules.PauseAll(ctx)
}

// poolReport is the warm pools' report of each heartbeat (docs/api.md, "Warm pools"). Heartbeats start
// in Run, after New set s.capsules.
func (s *Server) poolReport() []enroll.PoolReport {
	if s.capsules == nil {
		return nil
	}
	stats := s.capsules.Pools()
	out := make([]enroll.PoolReport, 0, len(stats))
	for _, p := range stats {
		out = append(out, enroll.PoolReport{
			PoolShape: enroll.PoolShape{TeamID: p.TeamID, Template: p.TemplateID, VCPUs: p.VCPUs,
				MemoryMB: p.MemberMemoryMB, DiskMB: p.DiskMB, AllowInternet: p.AllowInternet},
			Size: p.Size, Ready: p.Ready, Hits: p.Hits, Misses: p.Misses,
		})
	}
	return out
}

// applyPools makes the pools a heartbeat answer names the agent's (docs/agent.md, "Warm pools").
func (s *Server) applyPools(ctx context.Context, pools []enroll.DesiredPool) {
	if s.capsules == nil {
		return
	}
	specs := make([]capsules.PoolSpec, 0, len(pools))
	for _, p := range pools {
		specs = append(specs, capsules.PoolSpec{TeamID: p.TeamID, TemplateID: p.Template, Size: p.Size,
			VCPUs: p.VCPUs, MemoryMB: p.MemoryMB, DiskMB: p.DiskMB, AllowInternet: p.AllowInternet})
	}
	if err := s.capsules.ReconcilePools(ctx, specs); err != nil {
		s.log.Warn("warm pools of the control plane", "error", err)
	}
}

// terminating makes Terminate also stop the agent once the RPC has answered.
type terminating struct {
	rpc.Agent
	once *sync.Once
	done chan struct{}
}

func (t terminating) Terminate(ctx context.Context) error {
	err := t.Agent.Terminate(ctx)
	if err == nil {
		// The delay lets the answer reach the caller before Run stops the server.
		time.AfterFunc(200*time.Millisecond, func() { t.once.Do(func() { close(t.done) }) })
	}
	return err
}

// shutdownServer stops srv gracefully within serverStopTimeout.
func shutdownServer(srv *http.Server) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, serverStopTimeout)
		defer cancel()
		return srv.Shutdown(ctx)
	}
}

// closeListener closes ln unless a server's shutdown already did.
func closeListener(ln net.Listener) func(context.Context) error {
	return func(context.Context) error {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	}
}
