// Package daemon assembles the host agent: it enrolls with the control plane, sets up the capsule
// network, the gVisor runtime, the image store and the capsules core, serves the hostagent.v1 API,
// the port proxy and the operational endpoints, and stops all of it in reverse order.
// cmd/wrenn-agent is a thin command line over it.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/network"
	"github.com/wrenn/wrenn/internal/hostagent/suspend"
)

// Config is the host agent's configuration; docs/configuration.md lists the flags behind each field.
type Config struct {
	Listen string // address of the hostagent.v1 API and the port proxy
	// ControlPlane is the control plane's base URL; set, the agent registers (or uses its stored
	// credentials), heartbeats and serves mutual TLS only. Empty: standalone, plain HTTP and h2c.
	ControlPlane      string
	RegistrationToken string        // one-time token, needed until the agent holds credentials
	Advertise         string        // ip:port the control plane reaches the agent at; empty: Listen
	HeartbeatInterval time.Duration // zero: enroll.DefaultHeartbeatInterval

	DataDir    string // capsules, snapshots, templates, images, credentials
	Runsc      string // the static runsc binary
	Envd       string // the envd binary capsules run as init
	DebugRunsc bool   // runsc debug logs in each capsule's runtime directory
	// BufferedCheckpoints turns off O_DIRECT writes and reads of checkpoints' memory
	// (-checkpoint-direct=false).
	BufferedCheckpoints bool

	NetPrefix    string        // prefix of every namespace, link and nftables table the agent creates
	Subnet       netip.Prefix  // capsule address pool, split into /30s
	NetworkGrace time.Duration // how long a paused capsule keeps its network
	// DNS is what capsules resolve with: "auto" (or empty: the host's non-loopback nameservers),
	// "none", or a comma-separated list of IPs.
	DNS string
	// EgressAllow are private or LAN IPv4 prefixes capsules with internet access may reach anyway
	// (docs/security.md, "Capsule egress"); empty: none.
	EgressAllow []netip.Prefix

	MetricsInterval time.Duration // per-capsule sampling, 10ms to 30s
	// MetricsIdleInterval is the sampling interval of idle capsules, up to 5m (raised to
	// MetricsInterval when below it); 0: 10 s.
	MetricsIdleInterval time.Duration
	MetricsListen       string       // plain-HTTP address of /metrics, /health and /ready; empty: off
	OnShutdown          suspend.Mode // what running capsules do when the agent stops
	// Pools are the warm pools kept from the start (-pool); the control plane may change them.
	Pools []capsules.PoolSpec

	Version string
	Log     *slog.Logger
}

// check refuses combinations the agent cannot run with; messages name the flags.
func (c Config) check() error {
	if c.ControlPlane == "" && (c.RegistrationToken != "" || c.Advertise != "") {
		return errors.New("-registration-token and -advertise need -control-plane (or WRENN_CONTROL_PLANE)")
	}
	if c.MetricsInterval < 10*time.Millisecond || c.MetricsInterval > 30*time.Second {
		return fmt.Errorf("-metrics-interval: %v is outside 10ms..30s", c.MetricsInterval)
	}
	if c.MetricsIdleInterval < 0 || c.MetricsIdleInterval > 5*time.Minute {
		return fmt.Errorf("-metrics-idle-interval: %v is outside 0..5m", c.MetricsIdleInterval)
	}
	if !c.Subnet.IsValid() {
		return errors.New("-subnet: not set")
	}
	return nil
}

// ParsePools parses -pool: comma-separated name=size pairs, each a warm pool of the default shape
// (docs/agent.md, "Warm pools").
func ParsePools(v string) ([]capsules.PoolSpec, error) {
	var out []capsules.PoolSpec
	for _, f := range strings.Split(v, ",") {
		name, size, ok := strings.Cut(strings.TrimSpace(f), "=")
		n, err := strconv.Atoi(size)
		if !ok || name == "" || err != nil || n < 0 || n > capsules.MaxPoolSize {
			return nil, fmt.Errorf("-pool: %q: want template=size with size 0..%d", f, capsules.MaxPoolSize)
		}
		out = append(out, capsules.PoolSpec{TemplateID: name, Size: n, AllowInternet: true})
	}
	return out, nil
}

// capsuleDNS resolves Config.DNS to the nameservers written into capsules.
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
