package network

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
)

// checkEgress validates the operator's allow-list and the DNS servers and
// returns the IPv4 ones (capsules have no IPv6, so an IPv6 DNS server is
// of no use to them and gets no rule).
func checkEgress(subnet netip.Prefix, dns []netip.Addr, allow []netip.Prefix) ([]netip.Addr, []netip.Prefix, error) {
	var allow4 []netip.Prefix
	for _, p := range allow {
		if !p.IsValid() || !p.Addr().Is4() {
			return nil, nil, fmt.Errorf("egress allow %s: not an IPv4 prefix (capsules have no IPv6)", p)
		}
		if p.Overlaps(subnet) {
			return nil, nil, fmt.Errorf("egress allow %s: overlaps the capsule subnet %s (capsules never reach each other)", p, subnet)
		}
		allow4 = append(allow4, p.Masked())
	}
	var dns4 []netip.Addr
	for _, d := range dns {
		d = d.Unmap()
		if d.Is4() && !subnet.Contains(d) {
			dns4 = append(dns4, d)
		}
	}
	return dns4, allow4, nil
}

// hostNetworks returns the host's own IPv4 addresses (as /32s) and the
// subnets attached to its interfaces, leaving out the capsule subnet (a
// rule of its own covers it; capsule links come and go all the time).
func hostNetworks(subnet netip.Prefix) ([]netip.Prefix, error) {
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	var nets []netip.Prefix
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.IPNet == nil {
			continue
		}
		ip = ip.Unmap()
		if !ip.Is4() || subnet.Contains(ip) {
			continue
		}
		ones, _ := a.Mask.Size()
		nets = append(nets, netip.PrefixFrom(ip, 32), netip.PrefixFrom(ip, ones).Masked())
	}
	slices.SortFunc(nets, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(nets), nil
}

// watchAddrs keeps the capsule-egress chain in step with the host's
// addresses until stop is closed: a netlink address subscription, and a
// new one (with a rebuild) if the kernel drops it (a full socket buffer).
// It closes done when it returns.
func (m *Manager) watchAddrs(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for {
		ch := make(chan netlink.AddrUpdate, 64)
		err := netlink.AddrSubscribeWithOptions(ch, stop, netlink.AddrSubscribeOptions{
			ErrorCallback: func(err error) { m.log.Debug("host address subscription", "error", err) },
		})
		if err != nil {
			m.log.Warn("follow host addresses", "error", err)
		} else {
			// Changes between the last rebuild and the subscription.
			m.refreshEgress()
			m.followAddrs(ch)
		}
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// followAddrs rebuilds the rules for each batch of address changes that
// do not concern the capsule subnet, until ch closes.
func (m *Manager) followAddrs(ch <-chan netlink.AddrUpdate) {
	for u := range ch {
		if ip, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok && m.pool.subnet.Contains(ip.Unmap()) {
			continue
		}
		for more := true; more; { // one rebuild for a burst of changes
			select {
			case _, ok := <-ch:
				if !ok {
					m.refreshEgress()
					return
				}
			default:
				more = false
			}
		}
		m.refreshEgress()
	}
}

// refreshEgress rebuilds the capsule-egress chain from the host's current
// addresses; a failure leaves the previous rules and is logged.
func (m *Manager) refreshEgress() {
	nets, err := hostNetworks(m.pool.subnet)
	if err == nil {
		err = m.fw.refresh(nets)
	}
	if err != nil {
		m.log.Warn("update capsule egress rules for the host's addresses", "error", err)
		return
	}
	m.log.Debug("capsule egress rules updated", "host_networks", len(nets))
}

// Detach stops following the host's addresses; the rules stay as they
// are. An agent that stops and leaves its capsules running calls it
// instead of Close. Calling it again does nothing.
func (m *Manager) Detach() {
	m.detach.Do(func() {
		close(m.stopWatch)
		<-m.watchDone
	})
}
