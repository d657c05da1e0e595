package channels

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// errDestination is returned when a delivery would connect to an address the operator has not
// allowed: loopback, private, shared (100.64/10), link-local (cloud metadata included), unspecified,
// multicast or reserved (docs/security.md, "Control plane: outbound requests").
var errDestination = errors.New("destination address not allowed")

// blocked lists the ranges outside IsLoopback/IsPrivate/IsLinkLocal*/IsMulticast/IsUnspecified that
// deliveries refuse as well.
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // shared address space (carrier-grade NAT)
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("fec0::/10"),      // deprecated site-local
}

// nat64 is the well-known NAT64 prefix: its addresses embed an IPv4 address, which is checked.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// egress decides which resolved addresses deliveries may connect to.
type egress struct {
	allowAll bool           // the operator allows every destination
	allowed  []netip.Prefix // destinations allowed despite being in a refused range
}

// permitted reports whether a delivery may connect to ip.
func (e egress) permitted(ip netip.Addr) bool {
	ip = ip.Unmap()
	if e.allowAll {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	if slices.ContainsFunc(e.allowed, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		return true
	}
	if nat64.Contains(ip) {
		b := ip.As16()
		return e.permitted(netip.AddrFrom4([4]byte(b[12:16])))
	}
	switch {
	case ip.IsLoopback(), ip.IsPrivate(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(),
		ip.IsInterfaceLocalMulticast(), ip.IsMulticast(), ip.IsUnspecified():
		return false
	}
	return !slices.ContainsFunc(blocked, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// control is a net.Dialer Control func: it runs after DNS resolution, on the address actually dialed,
// so neither a DNS answer nor a redirect can lead a delivery to a refused address.
func (e egress) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", errDestination, network)
	}
	if !e.permitted(ap.Addr()) {
		return errDestination
	}
	return nil
}

// transport is the HTTP transport of deliveries: direct connections (no proxy from the environment,
// whose address the check would refuse) through a dialer that checks every address.
func (e egress) transport() *http.Transport {
	d := &net.Dialer{Timeout: DeliveryTimeout, KeepAlive: 30 * time.Second, Control: e.control}
	return &http.Transport{
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   DeliveryTimeout,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: DeliveryTimeout,
	}
}
