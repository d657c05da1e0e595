// Package network gives capsules their network on a host: a namespace per
// capsule joined to the host by a veth pair on its own /30, and one nftables
// table that isolates capsules from each other and from the host and NATs
// the ones allowed to reach the internet.
package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Errors the Manager returns (wrapped). ErrExists and ErrNotFound are of the
// agent's error kinds; ErrFull is none of them: the host ran out of
// addresses, which no caller can fix, so the API reports an internal error.
var (
	ErrExists   = runtime.NewError(runtime.ErrExists, "capsule network already exists")
	ErrNotFound = runtime.NewError(runtime.ErrNotFound, "capsule network not found")
	ErrFull     = errors.New("no free capsule subnet")
)

// ipForward is the sysctl that lets the host route capsule traffic.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// Config configures a Manager. Every namespace, host link and the nftables
// table carry Prefix, so managers with different prefixes (the agent and
// tests) share a host without touching each other's objects.
type Config struct {
	// Prefix names everything the manager owns: namespaces "<prefix>-<id>",
	// host links "<prefix>h<slot>" and the inet table "<prefix>". Lowercase
	// letters and digits, starting with a letter; default "wrn".
	Prefix string
	// Subnet is split into /30 slots, one per capsule; default 10.11.0.0/16.
	Subnet netip.Prefix
	// DNS are the DNS servers capsules are given: capsules with internet
	// access reach port 53 (UDP and TCP) of each, even at a private address
	// or on the host itself. IPv6 servers get no rule (capsules are IPv4).
	DNS []netip.Addr
	// EgressAllow are IPv4 prefixes capsules with internet access may reach
	// although they are private or the host's attached networks (LAN
	// services the operator opens; -egress-allow). They never open the host
	// itself or the capsule subnet.
	EgressAllow []netip.Prefix
	Log         *slog.Logger
}

// Manager creates and removes capsule networks. It keeps no state of its
// own: slots, ids and internet access are read back from the host (links,
// their aliases and the nftables sets), so a restarted agent finds the
// networks a previous process created.
type Manager struct {
	prefix string
	pool   pool
	fw     *firewall
	log    *slog.Logger

	// mu serialises slot allocation with link and set element removal, so
	// a slot is never handed out twice and a removal never deletes what a
	// concurrent Create just made.
	mu sync.Mutex

	// The goroutine that follows the host's addresses (watchAddrs).
	stopWatch chan struct{}
	watchDone chan struct{}
	detach    sync.Once
}

// New checks cfg, enables IPv4 forwarding and installs the nftables table
// (replacing the rules of an existing one, keeping its set elements).
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "wrn"
	}
	if !cfg.Subnet.IsValid() {
		cfg.Subnet = netip.MustParsePrefix("10.11.0.0/16")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p, err := newPool(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	if err := checkPrefix(cfg.Prefix, p.size); err != nil {
		return nil, err
	}
	dns, allow, err := checkEgress(cfg.Subnet, cfg.DNS, cfg.EgressAllow)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		prefix:    cfg.Prefix,
		pool:      p,
		fw:        newFirewall(cfg.Prefix, hostIfPrefix(cfg.Prefix), cfg.Subnet, dns, allow),
		log:       cfg.Log,
		stopWatch: make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	if err := enableForwarding(); err != nil {
		return nil, err
	}
	if err := prepareNetnsDir(); err != nil {
		return nil, err
	}
	hostNets, err := hostNetworks(cfg.Subnet)
	if err != nil {
		return nil, err
	}
	if err := m.fw.install(hostNets); err != nil {
		return nil, fmt.Errorf("install nftables table %s: %w", cfg.Prefix, err)
	}
	go m.watchAddrs(m.stopWatch, m.watchDone)
	m.log.Info("capsule network ready", "prefix", m.prefix, "subnet", cfg.Subnet, "slots", p.size,
		"dns", dns, "egress_allow", allow, "host_networks", len(hostNets))
	return m, nil
}

// Close removes every capsule network with the manager's prefix and then
// its nftables table. Without the table capsules would be unfiltered, so it
// is only for shutting the host down for good (and for tests); a restarting
// agent just stops and calls New and Cleanup again.
func (m *Manager) Close(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	m.Detach()
	errs := []error{m.Cleanup(ctx, func(string) bool { return false })}
	if err := m.fw.remove(); err != nil {
		errs = append(errs, fmt.Errorf("delete nftables table %s: %w", m.prefix, err))
	}
	return errors.Join(errs...)
}

// enableForwarding turns on IPv4 forwarding, which capsule traffic to the
// outside needs; the nftables forward chain keeps it to what is allowed.
func enableForwarding() error {
	b, err := os.ReadFile(ipForward)
	if err != nil {
		return fmt.Errorf("read %s: %w", ipForward, err)
	}
	if len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable ip forwarding: %w", err)
	}
	return nil
}
