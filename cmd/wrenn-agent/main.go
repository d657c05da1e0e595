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
	"syscall"
	"time"

	"github.com/wrenn/wrenn/internal/agent"
	"github.com/wrenn/wrenn/internal/agentapi"
	"github.com/wrenn/wrenn/internal/capsule/gvisor"
	"github.com/wrenn/wrenn/internal/image"
	"github.com/wrenn/wrenn/internal/network"
)

// release is set at build time (-X main.release=…).
var release = "dev"

type config struct {
	listen    string
	dataDir   string
	runsc     string
	envd      string
	netPrefix string
	subnet    string
	debug     bool
	metrics   time.Duration
	netGrace  time.Duration
	logFormat string
	logLevel  string
	version   bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("wrenn-agent", flag.ContinueOnError)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:9900", "address of the hostagent.v1 Connect API (HTTP/1.1 and h2c)")
	fs.StringVar(&c.dataDir, "data-dir", "/var/lib/wrenn", "where capsules, snapshots, templates and images live")
	fs.StringVar(&c.runsc, "runsc", envOr("WRENN_RUNSC", gvisor.DefaultRunsc), "the runsc binary (static, see scripts/install-runsc.sh)")
	fs.StringVar(&c.envd, "envd", defaultEnvd(), "the envd binary capsules run as init")
	fs.StringVar(&c.netPrefix, "net-prefix", "wrn", "prefix of every network namespace, link and nftables table the agent creates")
	fs.StringVar(&c.subnet, "subnet", "10.11.0.0/16", "capsule address pool, split into /30s")
	fs.DurationVar(&c.metrics, "metrics-interval", 5*time.Second, "how often each capsule's CPU, memory and disk are sampled")
	fs.DurationVar(&c.netGrace, "network-grace", 30*time.Second, "how long a paused capsule keeps its network for a quick resume")
	fs.BoolVar(&c.debug, "debug-runsc", false, "write runsc debug logs into each capsule's runtime directory")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
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
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	subnet, err := netip.ParsePrefix(c.subnet)
	if err != nil {
		return fmt.Errorf("-subnet: %w", err)
	}
	nets, err := network.New(ctx, network.Config{Prefix: c.netPrefix, Subnet: subnet, Log: log.With("component", "network")})
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	rt, err := gvisor.New(gvisor.Config{
		Runsc:       c.runsc,
		StateDir:    filepath.Join(c.dataDir, "runsc"),
		CapsulesDir: filepath.Join(c.dataDir, "runtime"),
		Debug:       c.debug,
		Log:         log.With("component", "gvisor"),
	})
	if err != nil {
		return fmt.Errorf("gvisor: %w", err)
	}
	images := &image.Store{Dir: filepath.Join(c.dataDir, "images"), Log: log.With("component", "image")}
	defer images.Close()
	ag, err := agent.New(ctx, agent.Config{
		DataDir:      c.dataDir,
		Runtime:      rt,
		Network:      nets,
		Images:       images,
		Envd:         c.envd,
		MetricsEvery: c.metrics,
		NetworkGrace: c.netGrace,
		Log:          log.With("component", "agent"),
	})
	if err != nil {
		return err
	}
	defer ag.Close()

	terminated := make(chan struct{})
	api := agentapi.New(terminating{Agent: ag, done: terminated}, log.With("component", "api"))
	mux := http.NewServeMux()
	path, h := api.Handler()
	mux.Handle(path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return err
	}
	log.Info("wrenn-agent listening", "addr", ln.Addr().String(), "data_dir", c.dataDir, "release", release)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		log.Info("shutting down; capsules keep running")
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
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// terminating makes Terminate also stop the agent process once the RPC has
// answered.
type terminating struct {
	*agent.Agent
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
