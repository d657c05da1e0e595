// Command wrenn-agent is Wrenn's host agent: it runs the capsules of one
// machine and serves the hostagent.v1 Connect API to the control plane.
// `wrenn-agent prepare-images` builds capsule images ahead of their first use.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/daemon"
	"github.com/wrenn/wrenn/internal/hostagent/enroll"
	"github.com/wrenn/wrenn/internal/hostagent/images"
	"github.com/wrenn/wrenn/internal/hostagent/runtime/gvisor"
	"github.com/wrenn/wrenn/internal/hostagent/suspend"
)

// release is set at build time (-X main.release=…).
var release = "dev"

// exitNotBuilt is the exit status of `prepare-images -check` when an image is missing.
const exitNotBuilt = 3

func main() {
	err := run(os.Args[1:])
	if err != nil && !errors.Is(err, flag.ErrHelp) { // -h printed the usage
		fmt.Fprintln(os.Stderr, "wrenn-agent:", err)
		if errors.Is(err, daemon.ErrNotBuilt) {
			os.Exit(exitNotBuilt)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "prepare-images" {
		return prepareImages(args[1:])
	}
	c, version, err := parseFlags(args)
	if err != nil {
		return err
	}
	if version {
		fmt.Println("wrenn-agent", release)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := daemon.New(ctx, c)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func parseFlags(args []string) (c daemon.Config, version bool, err error) {
	var subnet, egressAllow, onShutdown, logFormat, logLevel string
	var checkpointDirect bool
	fs := flag.NewFlagSet("wrenn-agent", flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:9900", "address of the hostagent.v1 Connect API and the port proxy (mutual TLS with -control-plane, else HTTP/1.1 and h2c)")
	fs.StringVar(&c.ControlPlane, "control-plane", os.Getenv("WRENN_CONTROL_PLANE"), "control plane base URL; when set the agent registers, heartbeats and serves mutual TLS only")
	fs.StringVar(&c.RegistrationToken, "registration-token", os.Getenv("WRENN_REGISTRATION_TOKEN"), "one-time host registration token (needed until the agent holds credentials)")
	fs.StringVar(&c.Advertise, "advertise", "", "ip:port the control plane reaches this agent at (default -listen)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", enroll.DefaultHeartbeatInterval, "how often the agent reports to the control plane")
	fs.StringVar(&c.DataDir, "data-dir", "/var/lib/wrenn", "where capsules, snapshots, templates and images live")
	fs.StringVar(&c.Runsc, "runsc", envOr("WRENN_RUNSC", gvisor.DefaultRunsc), "the runsc binary (static, see scripts/install-runsc.sh)")
	fs.StringVar(&c.Envd, "envd", defaultEnvd(), "the envd binary capsules run as init")
	fs.StringVar(&c.NetPrefix, "net-prefix", "wrn", "prefix of every network namespace, link and nftables table the agent creates")
	fs.StringVar(&subnet, "subnet", "10.11.0.0/16", "capsule address pool, split into /30s")
	fs.DurationVar(&c.MetricsInterval, "metrics-interval", capsules.DefaultMetricsEvery, "how often each capsule's CPU, memory and disk are sampled (10ms to 30s); the 10-minute metrics tier keeps every sample")
	fs.DurationVar(&c.MetricsIdleInterval, "metrics-idle-interval", capsules.DefaultMetricsIdleEvery, "how often idle capsules (no calls, no CPU use, metrics not read) are sampled (up to 5m; never more often than -metrics-interval)")
	fs.DurationVar(&c.NetworkGrace, "network-grace", 30*time.Second, "how long a paused capsule keeps its network for a quick resume")
	fs.StringVar(&c.DNS, "dns", envOr("WRENN_DNS", "auto"), "DNS servers of capsules: auto (the host's non-loopback nameservers), none, or a comma-separated list of IPs")
	fs.StringVar(&egressAllow, "egress-allow", os.Getenv("WRENN_EGRESS_ALLOW"), "comma-separated IPv4 CIDRs (or addresses) of private or LAN services capsules with internet access may reach; everything private is closed otherwise (docs/security.md)")
	fs.BoolVar(&c.DebugRunsc, "debug-runsc", false, "write runsc debug logs into each capsule's runtime directory")
	fs.BoolVar(&checkpointDirect, "checkpoint-direct", true, "checkpoints (pause, snapshots, forks) write and restores (resume, templates, warm pools, forks) read the capsule's memory with O_DIRECT (runsc -direct); false: through the page cache, for a data directory on a filesystem without O_DIRECT (docs/agent.md)")
	fs.StringVar(&logFormat, "log-format", "text", "text or json")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&onShutdown, "on-shutdown", envOr("WRENN_ON_SHUTDOWN", string(suspend.Keep)), "what running capsules do when the agent stops: keep (they run on; the next agent adopts them) or pause (paused now, resumed at the next start)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", os.Getenv("WRENN_METRICS_LISTEN"), "plain HTTP address serving only /metrics, /health and /ready (a local Prometheus); empty: off")
	fs.Func("pool", "warm pool of a template, name=size (repeatable, or comma-separated): that many capsules of the default shape (1 vCPU, 512 MB, 5120 MB disk, internet on) kept booted for creates; the control plane's size wins for the templates it names (docs/agent.md)", func(v string) error {
		p, err := daemon.ParsePools(v)
		c.Pools = append(c.Pools, p...)
		return err
	})
	fs.BoolVar(&version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wrenn-agent [flags]\n       wrenn-agent prepare-images [flags] (build capsule images ahead of their first use; -h for its flags)\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, false, err
	}
	if version {
		return c, true, nil
	}
	c.BufferedCheckpoints = !checkpointDirect
	if c.Subnet, err = netip.ParsePrefix(subnet); err != nil {
		return c, false, fmt.Errorf("-subnet: %w", err)
	}
	if c.EgressAllow, err = parsePrefixes(egressAllow); err != nil {
		return c, false, fmt.Errorf("-egress-allow: %w", err)
	}
	if c.OnShutdown, err = suspend.ParseMode(onShutdown); err != nil {
		return c, false, fmt.Errorf("-on-shutdown: %w", err)
	}
	if c.Log, err = newLogger(logFormat, logLevel); err != nil {
		return c, false, err
	}
	c.Version = release
	return c, false, nil
}

// prepareImages is `wrenn-agent prepare-images`.
func prepareImages(args []string) error {
	fs := flag.NewFlagSet("wrenn-agent prepare-images", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "/var/lib/wrenn", "the agent's data directory; images are built into its images/")
	names := fs.String("name", "base", "comma-separated image recipes: "+strings.Join(images.Names(), ", "))
	check := fs.Bool("check", false, fmt.Sprintf("build nothing: exit with status %d when an image is not built yet", exitNotBuilt))
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: wrenn-agent prepare-images [flags]\n\nBuilds the named capsule images into the agent's image store (as the agent does on their first use;\nbuilding needs root) and prints \"<name> <id> <rootfs>\" for each.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("prepare-images: unexpected arguments %q", fs.Args())
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return daemon.PrepareImages(ctx, log, *dataDir, strings.Split(*names, ","), *check, os.Stdout)
}

// parsePrefixes parses a comma-separated list of IPv4 CIDRs; a bare address is its /32.
func parsePrefixes(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not a CIDR or an IP address", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("%q is not IPv4 (capsules have no IPv6)", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
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

func newLogger(format, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: %q is neither text nor json", format)
}
