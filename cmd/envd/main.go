// The runtime would re-read the CPU limit every second while awake; a
// capsule's limit never changes under a running envd (docs/envd.md).

//go:debug updatemaxprocs=0

// Command envd is the daemon that runs as init inside every capsule: it
// serves the envd protocol (process and filesystem Connect services, /files,
// /init, /health, ...) on port 49983.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/files"
	"github.com/wrenn/wrenn/internal/envd/fs"
	"github.com/wrenn/wrenn/internal/envd/hostapi"
	"github.com/wrenn/wrenn/internal/envd/metadata"
	"github.com/wrenn/wrenn/internal/envd/ports"
	"github.com/wrenn/wrenn/internal/envd/process"
	"github.com/wrenn/wrenn/internal/envd/quiet"
	"github.com/wrenn/wrenn/internal/envd/server"
)

// compatVersion is the E2B envd protocol version this build fully implements
// (docs/envd.md); it is reported on /health and gates SDK features.
const compatVersion = "0.6.4"

// release is Wrenn's own version, set at link time.
var release = "dev"

type config struct {
	addr         string
	metadataFile string
	runDir       string
	forwardPorts bool
	scanInterval time.Duration
	scanMax      time.Duration
	logFormat    string
	logLevel     string
	version      bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fl := flag.NewFlagSet("envd", flag.ContinueOnError)
	fl.StringVar(&c.addr, "addr", "0.0.0.0:49983", "listen address")
	fl.StringVar(&c.metadataFile, "metadata-file", "/.wrenn/metadata.json",
		"capsule metadata written by the host runtime (capsule id, template id)")
	fl.StringVar(&c.runDir, "run-dir", "/run/wrenn", "directory where capsule identity files are published")
	fl.BoolVar(&c.forwardPorts, "forward-ports", true,
		"expose ports bound only to loopback on the capsule's external addresses")
	fl.DurationVar(&c.scanInterval, "port-scan-interval", time.Second, "how often listening sockets are scanned while something changes")
	fl.DurationVar(&c.scanMax, "port-scan-max-interval", 8*time.Second, "the longest scan interval while the listening sockets stay unchanged")
	fl.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fl.BoolVar(&c.version, "version", false, "print the version and exit")
	if err := fl.Parse(args); err != nil {
		return c, err
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return c, fmt.Errorf("-log-format must be text or json, not %q", c.logFormat)
	}
	return c, nil
}

func newLogger(c config) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "envd:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	if c.version {
		fmt.Printf("envd %s (protocol %s)\n", release, compatVersion)
		return nil
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	store := defaults.New(map[string]string{"PATH": envOr("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")})

	var portSub *ports.Subsystem
	var started func()
	if c.forwardPorts {
		portSub = ports.New(ports.Config{Log: log.With("component", "ports"), Interval: c.scanInterval, MaxInterval: c.scanMax})
		portSub.Start()
		defer portSub.Stop()
		started = portSub.Poke // a new process may bind a port soon
	}

	// The collector sleeps while envd is idle and alone (docs/envd.md#idle).
	keeper := quiet.New(func() bool { return ports.OnlyProcess(ports.DefaultProc, os.Getpid()) }, quiet.DefaultGrace)
	var wg sync.WaitGroup
	kctx, stopKeeper := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		keeper.Run(kctx)
	}()
	defer wg.Wait()
	defer stopKeeper()

	procs, err := process.New(process.Config{Log: log.With("component", "process"), Defaults: store, Started: started, Ended: keeper.Poke})
	if err != nil {
		return fmt.Errorf("start process service: %w", err)
	}
	defer procs.Close()

	fsys := fs.New(log.With("component", "filesystem"), store)
	defer fsys.Close()

	host := hostapi.New(hostapi.Config{
		Log:      log.With("component", "host"),
		Defaults: store,
		Ports:    portSub,
		Metadata: metadata.File{Path: c.metadataFile},
		RunDir:   c.runDir,
		Version:  compatVersion,
	})

	handler := server.New(log, store, server.Handlers{
		Process:    procs,
		Filesystem: fsys,
		Files:      files.New(log.With("component", "files"), store),
		Host:       host,
	})

	// No TCP keep-alive probes on accepted connections: every probe wakes the
	// sandbox, and the agent closes its idle connections itself.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("envd listening", "addr", ln.Addr().String(), "version", compatVersion, "release", release)
	return server.Serve(ctx, log, ln, handler, keeper.ConnState)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
