// Command wrenn-agent is Wrenn's host agent: it runs the capsules of one
// machine and serves the hostagent.v1 Connect API to the control plane.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
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

// release is set at build time (-X main.release=…).
var release = "dev"

type config struct {
	listen       string
	advertise    string
	controlPlane string
	regToken     string
	heartbeat    time.Duration
	dataDir      string
	runsc        string
	envd         string
	netPrefix    string
	subnet       string
	debug        bool
	metrics      time.Duration
	netGrace     time.Duration
	dns          string
	logFormat    string
	logLevel     string
	onShutdown   string
	metricsAddr  string
	version      bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("wrenn-agent", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:9900", "address of the hostagent.v1 Connect API and the port proxy (mutual TLS with -control-plane, else HTTP/1.1 and h2c)")
	fs.StringVar(&c.controlPlane, "control-plane", os.Getenv("WRENN_CONTROL_PLANE"), "control plane base URL; when set the agent registers, heartbeats and serves mutual TLS only")
	fs.StringVar(&c.regToken, "registration-token", os.Getenv("WRENN_REGISTRATION_TOKEN"), "one-time host registration token (needed until the agent holds credentials)")
	fs.StringVar(&c.advertise, "advertise", "", "ip:port the control plane reaches this agent at (default -listen)")
	fs.DurationVar(&c.heartbeat, "heartbeat-interval", enroll.DefaultHeartbeatInterval, "how often the agent reports to the control plane")
	fs.StringVar(&c.dataDir, "data-dir", "/var/lib/wrenn", "where capsules, snapshots, templates and images live")
	fs.StringVar(&c.runsc, "runsc", envOr("WRENN_RUNSC", gvisor.DefaultRunsc), "the runsc binary (static, see scripts/install-runsc.sh)")
	fs.StringVar(&c.envd, "envd", defaultEnvd(), "the envd binary capsules run as init")
	fs.StringVar(&c.netPrefix, "net-prefix", "wrn", "prefix of every network namespace, link and nftables table the agent creates")
	fs.StringVar(&c.subnet, "subnet", "10.11.0.0/16", "capsule address pool, split into /30s")
	fs.DurationVar(&c.metrics, "metrics-interval", capsules.DefaultMetricsEvery, "how often each capsule's CPU, memory and disk are sampled (10ms to 30s); the 10-minute metrics tier keeps every sample")
	fs.DurationVar(&c.netGrace, "network-grace", 30*time.Second, "how long a paused capsule keeps its network for a quick resume")
	fs.StringVar(&c.dns, "dns", envOr("WRENN_DNS", "auto"), "DNS servers of capsules: auto (the host's non-loopback nameservers), none, or a comma-separated list of IPs")
	fs.BoolVar(&c.debug, "debug-runsc", false, "write runsc debug logs into each capsule's runtime directory")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.onShutdown, "on-shutdown", envOr("WRENN_ON_SHUTDOWN", string(suspend.Keep)), "what running capsules do when the agent stops: keep (they run on; the next agent adopts them) or pause (paused now, resumed at the next start)")
	fs.StringVar(&c.metricsAddr, "metrics-listen", os.Getenv("WRENN_METRICS_LISTEN"), "plain HTTP address serving only /metrics, /health and /ready (a local Prometheus); empty: off")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	return c, fs.Parse(args)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// defaultEnvd is envd beside the agent binary (make build puts both in bin/).
func defaultEnvd() string {
	exe, err := os.Executable()
	if err != nil {
		return "envd"
	}
	return filepath.Join(filepath.Dir(exe), "envd")
}

func newLogger(c config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: %q is neither text nor json", c.logFormat)
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "wrenn-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	if c.version {
		fmt.Println("wrenn-agent", release)
		return nil
	}
	if c.controlPlane == "" && (c.regToken != "" || c.advertise != "") {
		return errors.New("-registration-token and -advertise need -control-plane (or WRENN_CONTROL_PLANE)")
	}
	if c.metrics < 10*time.Millisecond || c.metrics > 30*time.Second {
		return fmt.Errorf("-metrics-interval: %v is outside 10ms..30s", c.metrics)
	}
	onShutdown, err := suspend.ParseMode(c.onShutdown)
	if err != nil {
		return fmt.Errorf("-on-shutdown: %w", err)
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Registration comes first: a bad token fails before anything is set
	// up on the machine, and stored credentials survive later failures.
	var (
		ag      *capsules.Agent
		enr     *enroll.Client
		deleted = make(chan struct{})
	)
	if c.controlPlane != "" {
		pauseAll := func(ctx context.Context) error { return ag.PauseAll(ctx) } // Run starts once ag is set
		if enr, err = enrollHost(ctx, c, pauseAll, log, func() { close(deleted) }); err != nil {
			return err
		}
	}

	subnet, err := netip.ParsePrefix(c.subnet)
	if err != nil {
		return fmt.Errorf("-subnet: %w", err)
	}
	nets, err := network.New(ctx, network.Config{Prefix: c.netPrefix, Subnet: subnet, Log: log.With("component", "network")})
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	nameservers, err := capsuleDNS(c.dns)
	if err != nil {
		return err
	}
	rt, err := gvisor.New(gvisor.Config{
		Nameservers: nameservers,
		Runsc:       c.runsc,
		StateDir:    filepath.Join(c.dataDir, "runsc"),
		CapsulesDir: filepath.Join(c.dataDir, "runtime"),
		Debug:       c.debug,
		Log:         log.With("component", "gvisor"),
	})
	if err != nil {
		return fmt.Errorf("gvisor: %w", err)
	}
	versions := map[string]string{capsules.MetaAgentVersion: release}
	if v := runscVersion(ctx, c.runsc); v != "" {
		versions[capsules.MetaRunscVersion] = v
	} else {
		log.Warn("runsc does not tell its version; capsules report none", "runsc", c.runsc)
	}
	imageStore := &images.Store{Dir: filepath.Join(c.dataDir, "images"), Log: log.With("component", "image")}
	defer imageStore.Close()
	proxy := rpc.NewProxy(log.With("component", "proxy"))
	ag, err = capsules.New(ctx, capsules.Config{
		DataDir:      c.dataDir,
		Runtime:      rt,
		Network:      nets,
		Images:       imageStore,
		Envd:         c.envd,
		MetricsEvery: c.metrics,
		Versions:     versions,
		NetworkGrace: c.netGrace,
		Log:          log.With("component", "agent"),
		Stopping:     proxy.Drain,
	})
	if err != nil {
		return err
	}
	defer ag.Close()

	// Every API and shutdown operation goes through the metrics decorator.
	inst := metrics.Wrap(ag)
	reg := telemetry.NewRegistry(metrics.Namespace, release)
	reg.MustRegister(metrics.Collectors(inst, c.dataDir)...)
	resumed := telemetry.NewGate("resuming the capsules paused at the last shutdown")
	ready := append(metrics.ReadyChecks(metrics.ReadyConfig{
		Runsc: c.runsc, StateDir: filepath.Join(c.dataDir, "runsc"), NetTable: c.netPrefix,
	}), telemetry.Check{Name: "capsules", Fn: resumed.Check})
	probes := func(mux *http.ServeMux) {
		mux.Handle("GET /metrics", telemetry.MetricsHandler(reg, ""))
		mux.Handle("GET /health", telemetry.Health(release))
		mux.Handle("GET /ready", telemetry.Ready(ready...))
	}

	terminated := make(chan struct{})
	api := rpc.New(terminating{Agent: inst, done: terminated}, log.With("component", "api"))
	mux := http.NewServeMux()
	path, h := api.Handler()
	mux.Handle(path, h)
	probes(mux)
	srv := &http.Server{Handler: proxy.Wrap(ag, mux), ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	defer ln.Close()

	errc := make(chan error, 2)
	var metricsSrv *http.Server
	if c.metricsAddr != "" {
		mln, err := net.Listen("tcp", c.metricsAddr)
		if err != nil {
			return fmt.Errorf("-metrics-listen: %w", err)
		}
		defer mln.Close()
		pmux := http.NewServeMux()
		probes(pmux)
		metricsSrv = &http.Server{Handler: pmux, ReadHeaderTimeout: 10 * time.Second}
		log.Info("metrics listening (plain HTTP)", "addr", mln.Addr().String())
		go func() { errc <- metricsSrv.Serve(mln) }()
	}
	if enr == nil {
		srv.Protocols.SetUnencryptedHTTP2(true)
		log.Info("wrenn-agent listening (plain HTTP, no control plane)", "addr", ln.Addr().String(), "data_dir", c.dataDir, "release", release)
		go func() { errc <- srv.Serve(ln) }()
	} else {
		if srv.TLSConfig, err = enr.TLSConfig(); err != nil {
			return err
		}
		srv.Protocols.SetHTTP2(true)
		log.Info("wrenn-agent listening (mutual TLS)", "addr", ln.Addr().String(), "host_id", enr.Credentials().HostID,
			"control_plane", c.controlPlane, "data_dir", c.dataDir, "release", release)
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
		go func() {
			if err := enr.Run(ctx); err != nil {
				log.Error("heartbeats stopped", "error", err)
			}
		}()
	}
	// Capsules paused by the last shutdown come back once the API serves (readiness waits for them).
	resumeDone := make(chan struct{})
	go func() {
		defer close(resumeDone)
		if _, err := suspend.ResumeRecorded(ctx, inst, c.dataDir, log); err != nil {
			log.Error("resume capsules paused at shutdown", "error", err)
		}
		resumed.Open()
	}()
	stopping := false
	select {
	case <-ctx.Done():
		stopping = true
	case <-deleted:
		log.Info("host deleted by the control plane: shutting down")
	case <-terminated:
		log.Info("terminated: every capsule destroyed")
		if err := nets.Close(context.Background()); err != nil {
			log.Warn("remove network rules", "error", err)
		}
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	<-resumeDone
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if stopping {
		// After the API stopped, so no call races the pauses.
		if shutdownCapsules(inst, onShutdown, c.dataDir, log) {
			// Nothing runs any more: the networks kept for quick resumes and the nftables table go
			// too (the next start sets up networks again for what it resumes).
			if err := nets.Close(context.Background()); err != nil {
				log.Warn("remove network rules", "error", err)
			}
		}
	}
	if metricsSrv != nil {
		err = errors.Join(err, metricsSrv.Shutdown(sctx))
	}
	return err
}

// shutdownCapsules applies -on-shutdown to the running capsules and reports whether none is left
// running (pause mode, every pause succeeded).
func shutdownCapsules(inst *metrics.Agent, mode suspend.Mode, dataDir string, log *slog.Logger) bool {
	if mode != suspend.Pause {
		log.Info("shutting down; capsules keep running")
		return false
	}
	log.Info("shutting down; pausing running capsules")
	start := time.Now()
	paused, err := suspend.PauseRunning(context.Background(), inst, dataDir, log)
	if err != nil {
		log.Error("some capsules could not be paused and keep running", "error", err)
	}
	log.Info("capsules paused; they resume at the next start", "count", len(paused), "took", time.Since(start).Round(time.Millisecond))
	return err == nil
}

// enrollHost registers the agent with the control plane (or loads its
// stored credentials) and returns the client that heartbeats.
func enrollHost(ctx context.Context, c config, pauseAll func(context.Context) error, log *slog.Logger, onDeleted func()) (*enroll.Client, error) {
	addr := c.advertise
	if addr == "" {
		addr = c.listen
	}
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return nil, err
	}
	specs, err := enroll.DetectSpecs(c.dataDir)
	if err != nil {
		return nil, fmt.Errorf("machine specs: %w", err)
	}
	enr, err := enroll.New(enroll.Config{
		ControlPlaneURL:   c.controlPlane,
		RegistrationToken: c.regToken,
		Address:           addr,
		StateFile:         filepath.Join(c.dataDir, "credentials.json"),
		Specs:             specs,
		Log:               log.With("component", "enroll"),
		PauseAll:          pauseAll,
		OnDeleted:         onDeleted,
		HeartbeatInterval: c.heartbeat,
	})
	if err != nil {
		if c.advertise == "" {
			return nil, fmt.Errorf("%w (set -advertise)", err)
		}
		return nil, fmt.Errorf("-advertise: %w", err)
	}
	if _, err := enr.Enroll(ctx); err != nil {
		return nil, err
	}
	return enr, nil
}

// terminating makes Terminate also stop the agent process once the RPC has
// answered.
type terminating struct {
	rpc.Agent
	done chan struct{}
}

func (t terminating) Terminate(ctx context.Context) error {
	err := t.Agent.Terminate(ctx)
	if err == nil {
		go func() {
			time.Sleep(200 * time.Millisecond) // let the answer reach the caller
			close(t.done)
		}()
	}
	return err
}

// capsuleDNS resolves the -dns flag to the nameservers written into capsules.
func capsuleDNS(v string) ([]string, error) {
	switch v {
	case "auto", "":
		return network.HostNameservers(), nil
	case "none":
		return nil, nil
	}
	var out []string
	for _, f := range strings.Split(v, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("-dns: %q is not an IP address (use auto, none or a comma-separated list)", f)
		}
		out = append(out, a.String())
	}
	return out, nil
}
