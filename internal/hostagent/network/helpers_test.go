package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// blockedAfter is how long a dial must go unanswered to count as dropped.
const blockedAfter = time.Second

// newManager starts a Manager with a prefix and subnet of its own, so it
// touches nothing of the real agent or of other test runs, and checks when
// the test ends that Close left nothing of it behind.
// Options, if any, adjust the configuration.
func newManager(t *testing.T, opts ...func(*Config)) (*Manager, Config) {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := Config{Prefix: testutil.RandomName("wrt", 4), Subnet: freeSubnet(t)}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertNoTrace(t, cfg.Prefix)
	})
	return m, cfg
}

// freeSubnet picks a /24 in 10.200.0.0-10.239.255.0 no host address is in.
func freeSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
next:
	for range 64 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(200 + rand.IntN(40)), byte(rand.IntN(256)), 0}), 24)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && p.Contains(ip.Unmap()) {
				continue next
			}
		}
		return p
	}
	t.Fatal("no free /24 for the capsule subnet")
	return netip.Prefix{}
}

// assertNoTrace fails if a namespace, veth or table with prefix is left.
func assertNoTrace(t *testing.T, prefix string) {
	t.Helper()
	if names, _ := listNetns(prefix + "-"); len(names) > 0 {
		t.Errorf("namespaces left: %v", names)
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, hostIfPrefix(prefix)) {
			t.Errorf("link left: %s", l.Attrs().Name)
		}
	}
	if tableExists(t, prefix, nftables.TableFamilyINet) {
		t.Errorf("nftables table inet %s left", prefix)
	}
}

func tableExists(t *testing.T, name string, family nftables.TableFamily) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(family)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == name {
			return true
		}
	}
	return false
}

// world is the outside network a capsule with internet reaches: a
// namespace routed through the host, running an echo listener on every
// address it has: a public one (the internet), its veth address (a subnet
// attached to the host), two private LAN addresses the host does not have,
// and 169.254.169.254 (a stand-in metadata service).
type world struct {
	testutil.Netns
	public  netip.Addr // 198.51.100.N (documentation range), routed by the host to the namespace
	addr    string     // listener at the public address
	private string     // the same listener at the veth address (10.241.N.2)
	lan     string     // ... at 192.168.N.2
	lan2    string     // ... at 192.168.N.3
	meta    string     // ... at 169.254.169.254
}

// newWorld builds the world. N is the namespace's reserved octet
// (testutil.NewNetns), so concurrent test processes do not share addresses;
// the host routes the /32s it adds to the namespace, and the routes go with
// the namespace's veth.
func newWorld(t *testing.T) world {
	t.Helper()
	out := testutil.NewNetns(t)
	n := netip.MustParseAddr(out.InsideIP).As4()[2]
	w := world{Netns: out, public: netip.AddrFrom4([4]byte{198, 51, 100, n})}
	run(t, "ip", "-n", out.Name, "route", "add", "default", "via", out.HostIP)
	inside := []string{w.public.String(), fmt.Sprintf("192.168.%d.2", n), fmt.Sprintf("192.168.%d.3", n), "169.254.169.254"}
	for _, a := range inside {
		run(t, "ip", "-n", out.Name, "addr", "add", a+"/32", "dev", "lo")
	}
	for _, a := range inside[:3] {
		run(t, "ip", "route", "add", a+"/32", "via", out.InsideIP, "dev", out.HostVeth)
	}
	ln := listen(t, netnsPath(out.Name), "0.0.0.0:0")
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	w.addr = net.JoinHostPort(inside[0], port)
	w.lan = net.JoinHostPort(inside[1], port)
	w.lan2 = net.JoinHostPort(inside[2], port)
	w.meta = net.JoinHostPort(inside[3], port)
	w.private = net.JoinHostPort(out.InsideIP, port)
	return w
}

// newClient is a plain namespace routed through the host, outside the
// manager's control: what it reaches shows routing works, so a capsule
// that cannot reach the same address is stopped by the firewall.
func newClient(t *testing.T) testutil.Netns {
	t.Helper()
	c := testutil.NewNetns(t)
	run(t, "ip", "-n", c.Name, "route", "add", "default", "via", c.HostIP)
	return c
}

// routeMetadata sends 169.254.169.254 arriving on the given host links to
// the world namespace instead of the host's own default route, so the test
// never touches a real metadata service.
func routeMetadata(t *testing.T, w world, links ...string) {
	t.Helper()
	table := fmt.Sprint(20000 + rand.IntN(10000))
	run(t, "ip", "route", "add", "169.254.169.254/32", "via", w.InsideIP, "dev", w.HostVeth, "table", table)
	t.Cleanup(func() { _ = exec.Command("ip", "route", "flush", "table", table).Run() })
	for _, l := range links {
		pref := fmt.Sprint(1000 + rand.IntN(9000))
		run(t, "ip", "rule", "add", "pref", pref, "iif", l, "lookup", table)
		t.Cleanup(func() { _ = exec.Command("ip", "rule", "del", "pref", pref).Run() })
	}
}

// inNetns runs fn on a thread inside the namespace at path ("" for the
// host's). The thread is discarded afterwards, never reused.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// listen opens a TCP listener in the namespace at path that answers every
// connection with the peer address it sees, until the test ends.
func listen(t *testing.T, path, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := inNetns(path, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %q: %v", addr, path, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintln(c, c.RemoteAddr())
			_ = c.Close()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln
}

// dial connects from the namespace at path and returns the address the
// listener saw the connection come from.
func dial(path, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNetns(path, func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}

// reach asserts that a connection from path to addr succeeds and returns
// the source address the listener saw.
func reach(t *testing.T, path, addr string) string {
	t.Helper()
	seen, err := dial(path, addr, 5*time.Second)
	if err != nil {
		t.Errorf("from %q to %s: %v, want connected", path, addr, err)
	}
	return seen
}

// probe is a connection a test expects the firewall to drop.
type probe struct{ from, to string }

// blocked asserts that every probe goes unanswered (dropped, not refused),
// running them concurrently.
func blocked(t *testing.T, probes ...probe) {
	t.Helper()
	errs := make([]error, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() {
			seen, err := dial(p.from, p.to, blockedAfter)
			var ne net.Error
			switch {
			case err == nil:
				errs[i] = fmt.Errorf("from %q to %s: connected (seen as %s), want dropped", p.from, p.to, seen)
			case !errors.As(err, &ne) || !ne.Timeout():
				errs[i] = fmt.Errorf("from %q to %s: %v, want a timeout (dropped)", p.from, p.to, err)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func create(t *testing.T, m *Manager, id string, internet bool) *Net {
	t.Helper()
	n, err := m.Create(t.Context(), id, internet)
	if err != nil {
		t.Fatalf("Create %s: %v", id, err)
	}
	return n
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func linkExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

func port(ln net.Listener) string { return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port) }
