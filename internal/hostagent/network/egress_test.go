package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestEgress shows what a capsule with internet access reaches beyond the
// host (docs/security.md, "Capsule egress"): the public world, its DNS
// server on port 53 (UDP and TCP) only, the LAN service the operator
// allowed; not other private addresses, subnets attached to the host,
// link-local metadata, the host's own addresses, nor anything over IPv6.
func TestEgress(t *testing.T) {
	w := newWorld(t)
	n := netip.MustParseAddr(w.InsideIP).As4()[2]
	dnsIP := fmt.Sprintf("192.168.%d.53", n)
	run(t, "ip", "-n", w.Name, "addr", "add", dnsIP+"/32", "dev", "lo")
	run(t, "ip", "route", "add", dnsIP+"/32", "via", w.InsideIP, "dev", w.HostVeth)
	wPath := netnsPath(w.Name)
	dnsTCP := listen(t, wPath, dnsIP+":53")
	dnsOther := listen(t, wPath, dnsIP+":0")
	udpEcho(t, wPath, dnsIP+":53")

	lanAllowed := netip.MustParsePrefix(strings.Split(w.lan, ":")[0] + "/32")
	m, _ := newManager(t, func(c *Config) {
		c.DNS = []netip.Addr{netip.MustParseAddr(dnsIP), netip.MustParseAddr("2001:db8::53")}
		c.EgressAllow = []netip.Prefix{lanAllowed}
	})
	a := create(t, m, "eg-a", true)
	b := create(t, m, "eg-b", false)
	ctl := newClient(t)
	ctlPath := netnsPath(ctl.Name)
	hostLn := listen(t, "", "0.0.0.0:0")
	routeMetadata(t, w, a.HostIf, ctl.HostVeth)

	// Positive controls: an unmanaged namespace reaches every address, so
	// what a capsule does not reach is stopped by the firewall.
	for _, addr := range []string{w.addr, w.lan, w.lan2, w.private, w.meta, dnsOther.Addr().String()} {
		reach(t, ctlPath, addr)
	}

	t.Run("Public", func(t *testing.T) {
		reach(t, a.NetnsPath, w.addr)
	})
	t.Run("DNS", func(t *testing.T) {
		reach(t, a.NetnsPath, dnsTCP.Addr().String())
		if err := udpAsk(a.NetnsPath, dnsIP+":53"); err != nil {
			t.Errorf("capsule to DNS over UDP: %v", err)
		}
		blocked(t, probe{a.NetnsPath, dnsOther.Addr().String()}, probe{b.NetnsPath, dnsTCP.Addr().String()})
		if err := udpAsk(b.NetnsPath, dnsIP+":53"); err == nil {
			t.Error("capsule without internet asked the DNS server")
		}
	})
	t.Run("Allowed", func(t *testing.T) {
		reach(t, a.NetnsPath, w.lan)
		blocked(t, probe{b.NetnsPath, w.lan})
	})
	t.Run("Private", func(t *testing.T) {
		blocked(t,
			probe{a.NetnsPath, w.lan2},    // a private network beside the host
			probe{a.NetnsPath, w.private}, // a subnet attached to the host
			probe{a.NetnsPath, w.meta},    // link-local metadata
		)
	})
	t.Run("Host", func(t *testing.T) {
		reach(t, ctlPath, net.JoinHostPort(ctl.HostIP, port(hostLn)))
		probes := []probe{
			{a.NetnsPath, net.JoinHostPort(a.HostIP.String(), port(hostLn))},
			{a.NetnsPath, net.JoinHostPort(w.HostIP, port(hostLn))},
		}
		for _, h := range hostAddrs(t) {
			probes = append(probes, probe{a.NetnsPath, net.JoinHostPort(h, port(hostLn))})
		}
		blocked(t, probes...)
	})
	t.Run("IPv6", func(t *testing.T) {
		// The capsule gets an IPv6 address and route to the host; nothing
		// it sends over IPv6 is forwarded or accepted.
		run(t, "ip", "-n", a.Netns, "addr", "add", "fd7e::2/64", "dev", a.Interface, "nodad")
		run(t, "ip", "addr", "add", "fd7e::1/64", "dev", a.HostIf, "nodad")
		v6 := listen6(t, "", "[fd7e::1]:0")
		var c net.Conn
		err := inNetns(a.NetnsPath, func() (err error) {
			c, err = net.DialTimeout("tcp6", v6.Addr().String(), blockedAfter)
			return err
		})
		if err == nil {
			c.Close()
			t.Error("capsule reached the host over IPv6")
		}
	})
	t.Run("HostAddressAdded", func(t *testing.T) {
		// A subnet the host attaches after the agent started is closed
		// too: the world's public address joins an attached /30 (the
		// route to it stays, being more specific).
		dummy := m.prefix + "d" // a veth pair: the dummy module may be missing
		run(t, "ip", "link", "add", dummy, "type", "veth", "peer", "name", m.prefix+"e")
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", dummy).Run() })
		run(t, "ip", "addr", "add", fmt.Sprintf("198.51.100.%d/30", n^1), "dev", dummy)
		run(t, "ip", "link", "set", dummy, "up")
		waitFor(t, func() bool { _, err := dial(a.NetnsPath, w.addr, blockedAfter); return err != nil })
		run(t, "ip", "link", "del", dummy)
		waitFor(t, func() bool { _, err := dial(a.NetnsPath, w.addr, 5*time.Second); return err == nil })
	})
}

// hostAddrs lists the host's IPv4 addresses outside 127/8.
func hostAddrs(t *testing.T) []string {
	t.Helper()
	nets, err := hostNetworks(netip.MustParsePrefix("127.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range nets {
		if p.Bits() == 32 {
			out = append(out, p.Addr().String())
		}
	}
	return out
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met within 30s")
}

// udpEcho answers every datagram to addr, inside the namespace at path,
// with the same bytes, until the test ends.
func udpEcho(t *testing.T, path, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNetns(path, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
}

// udpAsk sends a datagram to addr from the namespace at path and waits for
// its echo.
func udpAsk(path, addr string) error {
	var c net.Conn
	if err := inNetns(path, func() (err error) { c, err = net.Dial("udp4", addr); return err }); err != nil {
		return err
	}
	defer c.Close()
	for range 3 {
		_ = c.SetDeadline(time.Now().Add(blockedAfter))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == "ping" {
			return nil
		}
	}
	return errors.New("no answer")
}

// listen6 is listen over IPv6.
func listen6(t *testing.T, path, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(path, func() (err error) { ln, err = net.Listen("tcp6", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}
