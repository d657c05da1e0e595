package gvisor

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// ensureAddress puts n's address and default route back on its interface.
// runsc --network=sandbox moves the address into gVisor's netstack and
// removes it from the namespace, so a restore, which needs it to configure
// the restored netstack, must add it again. Existing entries are kept; a
// network without an address is left as the caller configured it.
func ensureAddress(n runtime.Network) error {
	if n.Address == "" {
		return nil
	}
	addr, err := netlink.ParseAddr(n.Address)
	if err != nil {
		return fmt.Errorf("capsule address: %w", err)
	}
	ns, err := netns.GetFromPath(n.NetnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.NetnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", n.NetnsPath, err)
	}
	defer h.Close()

	link, err := h.LinkByName(n.Interface)
	if err != nil {
		return fmt.Errorf("interface %s in %s: %w", n.Interface, n.NetnsPath, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", n.Interface, err)
	}
	if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", n.Address, n.Interface, err)
	}
	if n.Gateway == "" {
		return nil
	}
	gw := net.ParseIP(n.Gateway)
	if gw == nil {
		return fmt.Errorf("capsule gateway %q is not an IP address", n.Gateway)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}
	if err := h.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add default route via %s: %w", n.Gateway, err)
	}
	return nil
}
