package ports

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/envd/ports/portstest"
)

// fakeExt is the "external" address of in-process tests: a loopback alias,
// so they touch nothing outside this host's lo.
var fakeExt = netip.MustParseAddr("127.0.0.2")

// fakeProc is a socket table the test writes, listing only the test's own
// listeners, so other processes' sockets never get forwarded.
type fakeProc struct {
	t   testing.TB
	dir string

	mu    sync.Mutex // guards socks
	socks map[netip.AddrPort]bool
}

func newFakeProc(t testing.TB) *fakeProc {
	f := &fakeProc{t: t, dir: t.TempDir(), socks: map[netip.AddrPort]bool{}}
	f.write()
	return f
}

func (f *fakeProc) add(ap netip.AddrPort) { f.mu.Lock(); f.socks[ap] = true; f.mu.Unlock(); f.write() }
func (f *fakeProc) remove(ap netip.AddrPort) {
	f.mu.Lock()
	delete(f.socks, ap)
	f.mu.Unlock()
	f.write()
}

// write replaces the table atomically, as the kernel's view is atomic per read.
func (f *fakeProc) write() {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	b.WriteString("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	i := 0
	for ap := range f.socks {
		a := ap.Addr().As4()
		fmt.Fprintf(&b, "%4d: %08X:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %d 1 0 100 0 0 10 0\n",
			i, binary.NativeEndian.Uint32(a[:]), ap.Port(), 1000+i)
		i++
	}
	tmp := filepath.Join(f.dir, "tcp.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		f.t.Error(err)
		return
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, "tcp")); err != nil {
		f.t.Error(err)
	}
}

// leakCheck verifies at the end of t (after every other cleanup) that no
// goroutine started during t is left.
func leakCheck(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func newFakeSubsystem(t *testing.T, fp *fakeProc) *Subsystem {
	s := New(Config{
		Interval: 5 * time.Millisecond,
		ProcNet:  fp.dir,
		Addrs:    func() ([]netip.Addr, error) { return []netip.Addr{fakeExt}, nil },
	})
	t.Cleanup(func() { stopWithin(t, s) })
	return s
}

func echoOnLoopback(t *testing.T, fp *fakeProc) (*portstest.Echo, netip.AddrPort) {
	e := portstest.NewEcho(t, "127.0.0.1:0")
	ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), e.Port())
	fp.add(ap)
	return e, ap
}

func waitForwarded(t *testing.T, s *Subsystem, port uint16, want bool) {
	t.Helper()
	if !portstest.Eventually(30*time.Second, func() bool { return slices.Contains(s.Forwarded(), port) == want }) {
		t.Fatalf("port %d forwarded = %v after 30s, want %v (forwarded: %v)", port, !want, want, s.Forwarded())
	}
}

func extAddr(port uint16) string { return netip.AddrPortFrom(fakeExt, port).String() }

func TestForwardAndUnforward(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := newFakeSubsystem(t, fp)
	e, ap := echoOnLoopback(t, fp)
	s.Start()
	s.Start() // idempotent
	waitForwarded(t, s, ap.Port(), true)
	if err := portstest.Ping(extAddr(ap.Port()), 10*time.Second); err != nil {
		t.Fatalf("ping through forwarder: %v", err)
	}

	// The program also binds the wildcard: no longer loopback-only.
	fp.add(netip.MustParseAddrPort(fmt.Sprintf("0.0.0.0:%d", ap.Port())))
	waitForwarded(t, s, ap.Port(), false)
	if !portstest.PortFree(extAddr(ap.Port())) {
		t.Fatalf("forwarding listener still open after the port stopped being loopback-only")
	}
	fp.remove(netip.MustParseAddrPort(fmt.Sprintf("0.0.0.0:%d", ap.Port())))
	waitForwarded(t, s, ap.Port(), true)

	// The loopback listener goes away.
	e.Close()
	fp.remove(ap)
	waitForwarded(t, s, ap.Port(), false)
	if !portstest.PortFree(extAddr(ap.Port())) {
		t.Fatalf("forwarding listener still open after the loopback listener went away")
	}
	stopWithin(t, s)
	s.Stop() // idempotent
}

// TestStopWithOpenConnection is the regression test for forwarder goroutines
// left behind by a snapshot: Stop with a proxied connection open must close
// it, free the port and leave no goroutine; Start afterwards works again.
func TestStopWithOpenConnection(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := newFakeSubsystem(t, fp)
	_, ap := echoOnLoopback(t, fp)
	for round := range 3 {
		s.Start()
		waitForwarded(t, s, ap.Port(), true)
		c, err := net.DialTimeout("tcp4", extAddr(ap.Port()), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := portstest.Roundtrip(c, fmt.Sprintf("round %d", round)); err != nil {
			t.Fatal(err)
		}
		// A second connection that has not sent anything yet.
		idle, err := net.DialTimeout("tcp4", extAddr(ap.Port()), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = idle.SetDeadline(time.Now().Add(30 * time.Second))

		stopWithin(t, s)
		if got := s.Forwarded(); len(got) != 0 {
			t.Fatalf("Forwarded after Stop = %v, want none", got)
		}
		if s.Running() {
			t.Fatal("Running after Stop")
		}
		for _, conn := range []net.Conn{c, idle} {
			if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("proxied connection not closed by Stop: read err = %v", err)
			}
			conn.Close()
		}
		if !portstest.PortFree(extAddr(ap.Port())) {
			t.Fatal("forwarding listener open after Stop")
		}
		// Only the test's own goroutines (the echo server) may remain.
		if n := countGoroutines("internal/envd/ports.("); n != 0 {
			t.Fatalf("%d subsystem goroutines alive after Stop", n)
		}
	}
}

// stopWithin stops s, failing t with every goroutine's stack if Stop
// deadlocks.
func stopWithin(t testing.TB, s *Subsystem) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Stop()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("Stop did not return within 10s:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// countGoroutines counts goroutines with a frame containing fn.
func countGoroutines(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) && !strings.Contains(g, "countGoroutines") {
			n++
		}
	}
	return n
}

// TestHalfClose checks that a client's half-close reaches the program and
// the program's answer still comes back.
func TestHalfClose(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := newFakeSubsystem(t, fp)
	_, ap := echoOnLoopback(t, fp)
	s.Start()
	waitForwarded(t, s, ap.Port(), true)
	c, err := net.DialTimeout("tcp4", extAddr(ap.Port()), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read after half-close = %q, %v; want hello, nil", got, err)
	}
	stopWithin(t, s)
}

// TestTargetGone: a connection accepted while the program is gone is closed,
// not hung.
func TestTargetGone(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := newFakeSubsystem(t, fp)
	e, ap := echoOnLoopback(t, fp)
	s.Start()
	waitForwarded(t, s, ap.Port(), true)
	e.Close() // the table still lists it: the scanner has not noticed yet
	c, err := net.DialTimeout("tcp4", extAddr(ap.Port()), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read = %v, want the connection closed", err)
	}
	stopWithin(t, s)
}

func TestScanErrorKeepsForwarders(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := newFakeSubsystem(t, fp)
	_, ap := echoOnLoopback(t, fp)
	s.Start()
	waitForwarded(t, s, ap.Port(), true)
	if err := os.Remove(filepath.Join(fp.dir, "tcp")); err != nil {
		t.Fatal(err)
	}
	// A negative check while several scans fail: a slow machine can only
	// make it pass.
	time.Sleep(50 * time.Millisecond)
	if !slices.Contains(s.Forwarded(), ap.Port()) {
		t.Fatal("a failing scan dropped a live forwarder")
	}
	if err := portstest.Ping(extAddr(ap.Port()), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	stopWithin(t, s)
}

func TestNextInterval(t *testing.T) {
	s := New(Config{Interval: time.Second, MaxInterval: 8 * time.Second})
	for _, c := range []struct {
		prev time.Duration
		hot  bool
		want time.Duration
	}{
		{time.Second, true, time.Second},
		{8 * time.Second, true, time.Second},
		{time.Second, false, 2 * time.Second},
		{4 * time.Second, false, 8 * time.Second},
		{8 * time.Second, false, 8 * time.Second},
	} {
		if got := s.next(c.prev, c.hot); got != c.want {
			t.Errorf("next(%v, hot=%v) = %v, want %v", c.prev, c.hot, got, c.want)
		}
	}
	d := New(Config{Interval: 2 * time.Second})
	if d.maxInterval != 16*time.Second || d.hot != time.Minute {
		t.Errorf("defaults for a 2s interval: max %v hot %v, want 16s and 1m", d.maxInterval, d.hot)
	}
	if c := New(Config{Interval: time.Second, MaxInterval: time.Millisecond}); c.maxInterval != time.Second {
		t.Errorf("MaxInterval below Interval = %v, want clamped to Interval", c.maxInterval)
	}
}

// TestSyncReportsChange: sync reports a change of the listening set (which
// makes the loop scan at the short interval again) and nothing else.
func TestSyncReportsChange(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := New(Config{ProcNet: fp.dir, Addrs: func() ([]netip.Addr, error) { return []netip.Addr{fakeExt}, nil }})
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel}
	st := &loopState{fw: map[netip.AddrPort]*forwarder{}, failing: map[netip.AddrPort]bool{}}
	t.Cleanup(func() {
		for _, f := range st.fw {
			f.stop()
		}
		cancel()
		r.wg.Wait()
	})
	if !s.sync(ctx, r, st) {
		t.Error("first scan: no change reported")
	}
	if s.sync(ctx, r, st) {
		t.Error("unchanged table: change reported")
	}
	fp.add(netip.MustParseAddrPort("0.0.0.0:1")) // a wildcard listener: nothing to forward
	if !s.sync(ctx, r, st) {
		t.Error("new listener: no change reported")
	}
	if s.sync(ctx, r, st) {
		t.Error("unchanged table after a change: change reported")
	}
	_, ap := echoOnLoopback(t, fp)
	if !s.sync(ctx, r, st) {
		t.Error("new loopback listener: no change reported")
	}
	if !slices.Contains(s.Forwarded(), ap.Port()) {
		t.Fatalf("loopback listener not forwarded: %v", s.Forwarded())
	}
	// The forwarder's own listener is not in the fake table: no change.
	if s.sync(ctx, r, st) {
		t.Error("unchanged table with a forwarder: change reported")
	}
}

// TestPokeScans: with an interval far beyond the test's deadline, only Poke
// can make the subsystem notice a new loopback listener.
func TestPokeScans(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	s := New(Config{
		Interval: time.Hour,
		ProcNet:  fp.dir,
		Addrs:    func() ([]netip.Addr, error) { return []netip.Addr{fakeExt}, nil },
	})
	t.Cleanup(func() { stopWithin(t, s) })
	s.Poke() // while stopped: dropped, Start scans anyway
	_, first := echoOnLoopback(t, fp)
	s.Start()
	waitForwarded(t, s, first.Port(), true) // the scan at Start ran
	_, ap := echoOnLoopback(t, fp)
	// A negative check: a slow machine can only make it pass.
	time.Sleep(50 * time.Millisecond)
	if slices.Contains(s.Forwarded(), ap.Port()) {
		t.Fatal("a listener was forwarded before the next scan was due")
	}
	s.Poke()
	waitForwarded(t, s, ap.Port(), true)
	if err := portstest.Ping(extAddr(ap.Port()), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
