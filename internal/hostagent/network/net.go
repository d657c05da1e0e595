package network

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// capsuleIf is the capsule end of the veth pair, inside the namespace.
const capsuleIf = "eth0"

// Net is one capsule's network: a namespace holding the capsule end of a
// veth pair, the host end in the root namespace, and a /30 between them.
type Net struct {
	ID        string       // capsule id
	Netns     string       // namespace name, "<prefix>-<id>"
	NetnsPath string       // /var/run/netns/<Netns>
	HostIf    string       // host end of the veth pair, "<prefix>h<slot>"
	Interface string       // capsule end inside the namespace, "eth0"
	HostIP    netip.Addr   // host end's address, the capsule's default gateway
	CapsuleIP netip.Addr   // the address the host reaches the capsule at
	Address   netip.Prefix // CapsuleIP/30, as configured on Interface
	// AllowInternet reports whether the capsule may reach addresses beyond
	// the host (through NAT).
	AllowInternet bool
}

// Capsule returns what a capsule runtime needs to know of n.
func (n *Net) Capsule() runtime.Network {
	return runtime.Network{
		NetnsPath: n.NetnsPath,
		Interface: n.Interface,
		Address:   n.Address.String(),
		Gateway:   n.HostIP.String(),
	}
}

func (n *Net) element() element { return element{ifname: n.HostIf, addr: n.CapsuleIP} }

func (m *Manager) newNet(id string, slot int) *Net {
	name := netnsName(m.prefix, id)
	capIP := m.pool.capsuleIP(slot)
	return &Net{
		ID:        id,
		Netns:     name,
		NetnsPath: netnsPath(name),
		HostIf:    hostIfName(m.prefix, slot),
		Interface: capsuleIf,
		HostIP:    m.pool.hostIP(slot),
		CapsuleIP: capIP,
		Address:   netip.PrefixFrom(capIP, 30),
	}
}

// Create makes the network of capsule id in the lowest free slot: the
// namespace with lo and eth0 up, eth0 addressed with a default route to the
// host, the host end addressed, and the capsule entered in the firewall.
// It fails with ErrExists if the capsule's namespace exists.
func (m *Manager) Create(ctx context.Context, id string, allowInternet bool) (_ *Net, err error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := netnsName(m.prefix, id)
	if err := createNetns(name); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if rerr := m.remove(id); rerr != nil {
				m.log.Warn("undo capsule network", "capsule_id", id, "error", rerr)
			}
		}
	}()
	ns, err := netns.GetFromPath(netnsPath(name))
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", name, err)
	}
	defer ns.Close()

	n, err := m.addVeth(id, ns)
	if err != nil {
		return nil, err
	}
	host, err := netlink.LinkByName(n.HostIf)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", n.HostIf, err)
	}
	if err := netlink.AddrReplace(host, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.HostIP, 30))}); err != nil {
		return nil, fmt.Errorf("address %s: %w", n.HostIf, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("set %s up: %w", n.HostIf, err)
	}
	if err := configureCapsule(ns, n); err != nil {
		return nil, err
	}
	if err := m.fw.add(m.fw.capsules, n.element()); err != nil {
		return nil, err
	}
	if allowInternet {
		if err := m.fw.add(m.fw.internet, n.element()); err != nil {
			return nil, err
		}
		n.AllowInternet = true
	}
	m.log.Debug("capsule network created", "capsule_id", id, "netns", n.Netns,
		"host_if", n.HostIf, "address", n.Address, "internet", allowInternet)
	return n, nil
}

// addVeth takes the lowest free slot and creates its veth pair, the
// capsule end directly inside ns. The host end's alias records the capsule
// id, which is how Adopt and Cleanup map links back to capsules.
func (m *Manager) addVeth(id string, ns netns.NsHandle) (*Net, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	used, err := m.usedSlotsLocked()
	if err != nil {
		return nil, err
	}
	slot := -1
	for i := range m.pool.size {
		if !used[i] {
			slot = i
			break
		}
	}
	if slot < 0 {
		return nil, fmt.Errorf("capsule %s: %w in %s", id, ErrFull, m.pool.subnet)
	}
	n := m.newNet(id, slot)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = n.HostIf
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: n.Interface, PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", n.HostIf, err)
	}
	// The kernel ignores an alias given at creation. Until it is set the
	// link belongs to no capsule, so Cleanup after a crash removes it.
	if err := netlink.LinkSetAlias(veth, id); err != nil {
		_ = netlink.LinkDel(veth)
		return nil, fmt.Errorf("set alias of %s: %w", n.HostIf, err)
	}
	return n, nil
}

// usedSlotsLocked returns the slots taken by a link of this prefix or by
// any address on the host inside the subnet.
func (m *Manager) usedSlotsLocked() (map[int]bool, error) {
	used := map[int]bool{}
	links, err := dump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if slot, ok := m.pool.parseHostIf(m.prefix, l.Attrs().Name); ok {
			used[slot] = true
		}
	}
	addrs, err := dump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			if slot, ok := m.pool.slotOf(ip.Unmap()); ok {
				used[slot] = true
			}
		}
	}
	return used, nil
}

// Readdress puts the capsule's address and default route back on its
// interface (gVisor's netstack takes them over and removes them from the
// namespace; a restore needs them back). Running it again is harmless.
func (m *Manager) Readdress(ctx context.Context, n *Net) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ns, err := netns.GetFromPath(n.NetnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.Netns, err)
	}
	defer ns.Close()
	return configureCapsule(ns, n)
}

// configureCapsule sets lo and the capsule interface up, with the address
// and default route, inside ns.
func configureCapsule(ns netns.NsHandle, n *Net) error {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", n.Netns, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", n.Netns, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in %s: %w", n.Netns, err)
	}
	eth, err := h.LinkByName(n.Interface)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", n.Interface, n.Netns, err)
	}
	if err := h.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(n.Address)}); err != nil {
		return fmt.Errorf("address %s in %s: %w", n.Interface, n.Netns, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("set %s up in %s: %w", n.Interface, n.Netns, err)
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: n.HostIP.AsSlice()}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("default route in %s: %w", n.Netns, err)
	}
	return nil
}

// SetInternet allows or denies the capsule traffic beyond the host. Denying
// also cuts its open connections to the outside.
func (m *Manager) SetInternet(ctx context.Context, n *Net, allow bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// A stale Net could name a slot another capsule has since taken.
	l, err := netlink.LinkByName(n.HostIf)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) || (err == nil && l.Attrs().Alias != n.ID) {
		return fmt.Errorf("capsule %s: %w", n.ID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", n.HostIf, err)
	}
	if allow {
		err = m.fw.add(m.fw.internet, n.element())
	} else {
		_, err = m.fw.purge([]*nftables.Set{m.fw.internet}, func(e element) bool { return e == n.element() })
	}
	if err != nil {
		return fmt.Errorf("capsule %s internet=%t: %w", n.ID, allow, err)
	}
	n.AllowInternet = allow
	m.log.Debug("capsule internet access", "capsule_id", n.ID, "internet", allow)
	return nil
}

// Destroy removes the capsule's firewall entries, veth pair and namespace.
// Parts already gone are not an error.
func (m *Manager) Destroy(ctx context.Context, n *Net) error {
	return m.Teardown(ctx, n.ID)
}

// Teardown is Destroy by capsule id.
func (m *Manager) Teardown(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := m.remove(id); err != nil {
		return fmt.Errorf("remove network of %s: %w", id, err)
	}
	m.log.Debug("capsule network removed", "capsule_id", id)
	return nil
}

// Setup is Create for callers that only need the runtime's view: it returns
// the network a runtime is given and the capsule's address.
func (m *Manager) Setup(ctx context.Context, id string, allowInternet bool) (runtime.Network, string, error) {
	n, err := m.Create(ctx, id, allowInternet)
	if err != nil {
		return runtime.Network{}, "", err
	}
	return n.Capsule(), n.CapsuleIP.String(), nil
}

// Adopt rebuilds the Net of a capsule whose network a previous agent
// process created, and makes sure its firewall entry is in place.
func (m *Manager) Adopt(ctx context.Context, id string) (*Net, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := netnsName(m.prefix, id)
	if _, err := os.Stat(netnsPath(name)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("capsule %s: netns %s: %w", id, name, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	links, err := m.hostLinks()
	if err != nil {
		return nil, err
	}
	var n *Net
	for _, l := range links {
		if l.id == id {
			n = m.newNet(id, l.slot)
			break
		}
	}
	if n == nil {
		return nil, fmt.Errorf("capsule %s: no host link: %w", id, ErrNotFound)
	}
	if err := m.fw.add(m.fw.capsules, n.element()); err != nil {
		return nil, err
	}
	if n.AllowInternet, err = m.fw.contains(m.fw.internet, n.element()); err != nil {
		return nil, err
	}
	return n, nil
}

// remove deletes the host links of capsule id, every set element that does
// not belong to a live link, and the capsule's namespace.
func (m *Manager) remove(id string) error {
	m.mu.Lock()
	errs := m.removeLinksLocked(func(linkID string) bool { return linkID != id })
	m.mu.Unlock()
	if err := deleteNetns(netnsName(m.prefix, id)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeLinksLocked deletes the capsule host links whose id keep rejects,
// then the set elements of links no longer there.
func (m *Manager) removeLinksLocked(keep func(id string) bool) []error {
	links, err := m.hostLinks()
	if err != nil {
		return []error{err}
	}
	var errs []error
	live := map[string]int{}
	for _, l := range links {
		if keep(l.id) {
			live[l.link.Attrs().Name] = l.slot
			continue
		}
		if err := netlink.LinkDel(l.link); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete %s: %w", l.link.Attrs().Name, err))
			live[l.link.Attrs().Name] = l.slot
			continue
		}
		m.log.Debug("deleted capsule link", "link", l.link.Attrs().Name, "capsule_id", l.id)
	}
	dropped, err := m.fw.purge([]*nftables.Set{m.fw.capsules, m.fw.internet}, func(e element) bool {
		slot, ok := live[e.ifname]
		return !ok || m.pool.capsuleIP(slot) != e.addr
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range dropped {
		m.log.Debug("deleted firewall entry", "link", e.ifname, "address", e.addr)
	}
	return errs
}

// hostLink is the host end of a capsule's veth pair.
type hostLink struct {
	link netlink.Link
	slot int
	id   string // the link's alias
}

// hostLinks lists the veth links named like this manager's host ends.
func (m *Manager) hostLinks() ([]hostLink, error) {
	links, err := dump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var hl []hostLink
	for _, l := range links {
		a := l.Attrs()
		slot, ok := m.pool.parseHostIf(m.prefix, a.Name)
		if !ok || l.Type() != "veth" {
			continue
		}
		hl = append(hl, hostLink{link: l, slot: slot, id: a.Alias})
	}
	return hl, nil
}

// dump retries a netlink dump the kernel interrupted because the table
// changed while it was read.
func dump[T any](f func() ([]T, error)) ([]T, error) {
	for range 4 {
		v, err := f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return f()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
