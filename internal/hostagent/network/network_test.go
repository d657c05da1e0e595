package network

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// TestIsolation runs capsules A (internet) and B (no internet) against an
// outside world, the host and each other.
func TestIsolation(t *testing.T) {
	m, _ := newManager(t)
	w := newWorld(t)
	ctl := newClient(t)

	if b, err := os.ReadFile(ipForward); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("ip_forward = %q, %v; want 1", b, err)
	}

	a := create(t, m, "cl-a", true)
	b := create(t, m, "cl-b", false)
	if a.HostIf == b.HostIf || a.CapsuleIP == b.CapsuleIP {
		t.Fatalf("capsules share a slot: %+v %+v", a, b)
	}
	if a.Interface != "eth0" || a.NetnsPath != "/var/run/netns/"+a.Netns || a.Address.Bits() != 30 || a.HostIP.Next() != a.CapsuleIP {
		t.Errorf("unexpected Net %+v", a)
	}
	lnA := listen(t, a.NetnsPath, net.JoinHostPort(a.CapsuleIP.String(), "0"))
	lnB := listen(t, b.NetnsPath, net.JoinHostPort(b.CapsuleIP.String(), "0"))
	hostLn := listen(t, "", "0.0.0.0:0")
	routeMetadata(t, w, a.HostIf, b.HostIf, ctl.HostVeth)
	ctlPath := netnsPath(ctl.Name)

	t.Run("InternetNATed", func(t *testing.T) {
		seen := reach(t, a.NetnsPath, w.addr)
		if host, _, _ := net.SplitHostPort(seen); host != w.HostIP {
			t.Errorf("outside saw %s, want the host's address %s (masquerade)", seen, w.HostIP)
		}
	})
	t.Run("NoInternet", func(t *testing.T) {
		blocked(t, probe{b.NetnsPath, w.addr})
	})
	t.Run("CapsuleToCapsule", func(t *testing.T) {
		blocked(t,
			probe{a.NetnsPath, lnB.Addr().String()},
			probe{b.NetnsPath, lnA.Addr().String()},
		)
	})
	t.Run("CapsuleToHost", func(t *testing.T) {
		reach(t, ctlPath, net.JoinHostPort(ctl.HostIP, port(hostLn)))
		blocked(t,
			probe{a.NetnsPath, net.JoinHostPort(a.HostIP.String(), port(hostLn))},
			probe{a.NetnsPath, net.JoinHostPort(w.HostIP, port(hostLn))},
			probe{a.NetnsPath, net.JoinHostPort(b.HostIP.String(), port(hostLn))},
			probe{b.NetnsPath, net.JoinHostPort(b.HostIP.String(), port(hostLn))},
			probe{b.NetnsPath, net.JoinHostPort(ctl.HostIP, port(hostLn))},
		)
	})
	t.Run("Metadata", func(t *testing.T) {
		reach(t, ctlPath, w.meta)
		blocked(t, probe{a.NetnsPath, w.meta}, probe{b.NetnsPath, w.meta})
	})
	t.Run("HostToCapsule", func(t *testing.T) {
		for _, ln := range []net.Listener{lnA, lnB} {
			seen := reach(t, "", ln.Addr().String())
			if host, _, _ := net.SplitHostPort(seen); host == "" {
				t.Errorf("capsule saw %q", seen)
			}
		}
	})
	t.Run("OutsideToCapsule", func(t *testing.T) {
		// A namespace that routes capsule addresses through the host
		// still cannot open connections to capsules.
		run(t, "ip", "-n", ctl.Name, "route", "add", m.pool.subnet.String(), "via", ctl.HostIP)
		blocked(t, probe{ctlPath, lnA.Addr().String()})
	})
	t.Run("Readdress", func(t *testing.T) {
		run(t, "ip", "-n", a.Netns, "addr", "flush", "dev", a.Interface)
		if _, err := dial("", lnA.Addr().String(), blockedAfter); err == nil {
			t.Fatal("capsule reachable after its address was flushed")
		}
		for range 2 {
			if err := m.Readdress(t.Context(), a); err != nil {
				t.Fatal(err)
			}
		}
		reach(t, "", lnA.Addr().String())
		reach(t, a.NetnsPath, w.addr)
	})
	t.Run("SetInternet", func(t *testing.T) {
		if err := m.SetInternet(t.Context(), b, true); err != nil {
			t.Fatal(err)
		}
		if !b.AllowInternet {
			t.Error("AllowInternet not set")
		}
		reach(t, b.NetnsPath, w.addr)
		blocked(t, probe{b.NetnsPath, w.meta}, probe{b.NetnsPath, lnA.Addr().String()})
		for range 2 {
			if err := m.SetInternet(t.Context(), b, false); err != nil {
				t.Fatal(err)
			}
		}
		if b.AllowInternet {
			t.Error("AllowInternet still set")
		}
		blocked(t, probe{b.NetnsPath, w.addr})
		reach(t, a.NetnsPath, w.addr)
	})
	t.Run("Spoofing", func(t *testing.T) {
		// B takes A's address: its packets no longer match its own entry,
		// so neither the internet nor the host (even replies) accept them.
		run(t, "ip", "-n", b.Netns, "addr", "add", a.Address.String(), "dev", b.Interface)
		defer run(t, "ip", "-n", b.Netns, "addr", "del", a.Address.String(), "dev", b.Interface)
		var c net.Conn
		err := inNetns(b.NetnsPath, func() (err error) {
			d := net.Dialer{Timeout: blockedAfter, LocalAddr: &net.TCPAddr{IP: a.CapsuleIP.AsSlice()}}
			c, err = d.Dial("tcp4", w.addr)
			return err
		})
		if err == nil {
			c.Close()
			t.Fatal("capsule B reached the outside with capsule A's address")
		}
	})
}

func TestCleanupAndAdopt(t *testing.T) {
	m, cfg := newManager(t)
	w := newWorld(t)
	ctx := t.Context()
	keep := create(t, m, "keep", true)
	lost := create(t, m, "lost", true)

	// Leftovers of a crash: a namespace without a link, a namespace file
	// never mounted, firewall entries of a link that is gone.
	run(t, "ip", "netns", "add", cfg.Prefix+"-ghost")
	if err := os.WriteFile(netnsPath(cfg.Prefix+"-half"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	stale := element{ifname: hostIfName(cfg.Prefix, 9), addr: m.pool.capsuleIP(9)}
	if err := m.fw.add(m.fw.capsules, stale); err != nil {
		t.Fatal(err)
	}
	if err := m.fw.add(m.fw.internet, stale); err != nil {
		t.Fatal(err)
	}

	// Look-alikes that are not the manager's.
	otherNetns := cfg.Prefix + "x-other"
	otherLink := hostIfName(cfg.Prefix, 7) // named like slot 7, but a bridge
	run(t, "ip", "netns", "add", otherNetns)
	t.Cleanup(func() { run(t, "ip", "netns", "del", otherNetns) })
	run(t, "ip", "link", "add", otherLink, "type", "bridge")
	t.Cleanup(func() { run(t, "ip", "link", "del", otherLink) })
	otherTables := []*nftables.Table{
		{Name: cfg.Prefix + "x", Family: nftables.TableFamilyINet},
		{Name: cfg.Prefix, Family: nftables.TableFamilyIPv4},
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range otherTables {
		c.AddTable(tb)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, tb := range otherTables {
			c.DelTable(tb)
		}
		if err := c.Flush(); err != nil {
			t.Errorf("delete test tables: %v", err)
		}
	})

	// The agent restarts: a new manager on the same prefix.
	m2, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New over an existing table: %v", err)
	}
	if err := m2.Cleanup(ctx, func(id string) bool { return id == "keep" }); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{lost.Netns, cfg.Prefix + "-ghost", cfg.Prefix + "-half"} {
		if fileExists(netnsPath(name)) {
			t.Errorf("netns %s survived Cleanup", name)
		}
	}
	if linkExists(lost.HostIf) {
		t.Errorf("link %s survived Cleanup", lost.HostIf)
	}
	for _, s := range []*nftables.Set{m2.fw.capsules, m2.fw.internet} {
		elems, err := m2.fw.elements(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(elems) != 1 || elems[0] != keep.element() {
			t.Errorf("set %s = %v, want only %v", s.Name, elems, keep.element())
		}
	}
	if !fileExists(netnsPath(otherNetns)) || !linkExists(otherLink) || !fileExists(keep.NetnsPath) || !linkExists(keep.HostIf) {
		t.Error("Cleanup removed something it must keep")
	}

	adopted, err := m2.Adopt(ctx, "keep")
	if err != nil {
		t.Fatal(err)
	}
	if *adopted != *keep {
		t.Errorf("Adopt = %+v, want %+v", adopted, keep)
	}
	if _, err := m2.Adopt(ctx, "lost"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Adopt(lost) = %v, want ErrNotFound", err)
	}
	reach(t, adopted.NetnsPath, w.addr)

	again := create(t, m2, "again", false)
	if again.HostIf != lost.HostIf {
		t.Errorf("new capsule got %s, want the lowest free slot %s", again.HostIf, lost.HostIf)
	}

	// Close removes everything of the prefix and nothing else.
	if err := m2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	assertNoTrace(t, cfg.Prefix)
	if !fileExists(netnsPath(otherNetns)) || !linkExists(otherLink) {
		t.Error("Close removed an unrelated namespace or link")
	}
	for _, tb := range otherTables {
		if !tableExists(t, tb.Name, tb.Family) {
			t.Errorf("Close removed unrelated table %s", tb.Name)
		}
	}
}

func TestDestroy(t *testing.T) {
	m, _ := newManager(t)
	ctx := t.Context()
	n := create(t, m, "cl-d", true)
	if err := m.Destroy(ctx, n); err != nil {
		t.Fatal(err)
	}
	assertGone(t, m, n)
	if err := m.Destroy(ctx, n); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := m.Teardown(ctx, n.ID); err != nil {
		t.Errorf("Teardown of a removed network: %v", err)
	}
	if _, err := m.Adopt(ctx, n.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Adopt after Destroy = %v, want ErrNotFound", err)
	}

	// A stale Net must not touch the capsule that reuses its slot.
	next := create(t, m, "cl-next", false)
	if next.HostIf != n.HostIf {
		t.Fatalf("slot not reused: %s, want %s", next.HostIf, n.HostIf)
	}
	if err := m.SetInternet(ctx, n, true); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetInternet on a stale Net = %v, want ErrNotFound", err)
	}
	if err := m.Destroy(ctx, n); err != nil {
		t.Fatal(err)
	}
	if !linkExists(next.HostIf) || !fileExists(next.NetnsPath) {
		t.Fatal("Destroy of a stale Net removed the capsule now in its slot")
	}
	if ok, _ := m.fw.contains(m.fw.capsules, next.element()); !ok {
		t.Error("Destroy of a stale Net removed the new capsule's firewall entry")
	}
	if ok, _ := m.fw.contains(m.fw.internet, next.element()); ok {
		t.Error("new capsule inherited internet access")
	}

	if _, err := m.Create(ctx, "cl-next", true); !errors.Is(err, ErrExists) {
		t.Errorf("second Create = %v, want ErrExists", err)
	}
	if !linkExists(next.HostIf) || !fileExists(next.NetnsPath) {
		t.Fatal("failed Create removed the existing network")
	}
	if err := m.Teardown(ctx, next.ID); err != nil {
		t.Fatal(err)
	}
	assertGone(t, m, next)
}

func TestConcurrentCreate(t *testing.T) {
	m, _ := newManager(t)
	const n = 8
	nets := make([]*Net, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			nets[i], errs[i] = m.Create(t.Context(), "cl-"+string(rune('a'+i)), i%2 == 0)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, x := range nets {
		if seen[x.CapsuleIP] {
			t.Errorf("address %s handed out twice", x.CapsuleIP)
		}
		seen[x.CapsuleIP] = true
		if slot, _ := m.pool.slotOf(x.CapsuleIP); slot >= n {
			t.Errorf("%s got slot %d, want one of the lowest %d", x.ID, slot, n)
		}
	}
	for _, x := range nets {
		wg.Go(func() {
			if err := m.Destroy(context.Background(), x); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for _, x := range nets {
		assertGone(t, m, x)
	}
}

func TestCapsuleNetwork(t *testing.T) {
	m, _ := newManager(t)
	cn, ip, err := m.Setup(t.Context(), "cl-s", false)
	if err != nil {
		t.Fatal(err)
	}
	n, err := m.Adopt(t.Context(), "cl-s")
	if err != nil {
		t.Fatal(err)
	}
	if cn.NetnsPath != n.NetnsPath || cn.Interface != "eth0" || cn.Address != n.Address.String() ||
		cn.Gateway != n.HostIP.String() || ip != n.CapsuleIP.String() || n.AllowInternet {
		t.Errorf("Setup = %+v, %s; Adopt = %+v", cn, ip, n)
	}
	if err := m.Teardown(t.Context(), "cl-s"); err != nil {
		t.Fatal(err)
	}
	assertGone(t, m, n)
}

// assertGone fails if anything of n is left. Another capsule may have
// taken n's slot since; its link and entries are not n's.
func assertGone(t *testing.T, m *Manager, n *Net) {
	t.Helper()
	if fileExists(n.NetnsPath) {
		t.Errorf("netns %s left", n.Netns)
	}
	l, err := netlink.LinkByName(n.HostIf)
	if err == nil && l.Attrs().Alias == n.ID {
		t.Errorf("link %s left", n.HostIf)
	}
	if err == nil {
		return
	}
	for _, s := range []*nftables.Set{m.fw.capsules, m.fw.internet} {
		elems, err := m.fw.elements(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			if e.addr == n.CapsuleIP || e.ifname == n.HostIf {
				t.Errorf("set %s still holds %v", s.Name, e)
			}
		}
	}
}
