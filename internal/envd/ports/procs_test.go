package ports

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/envd/ports/portstest"
)

func TestOnlyProcess(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"1", "self", "net", "sys"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if !OnlyProcess(dir, 1) {
		t.Error("only pid 1 listed: not alone")
	}
	if OnlyProcess(dir, 7) {
		t.Error("pid 1 listed besides self 7: alone")
	}
	if err := os.Mkdir(filepath.Join(dir, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if OnlyProcess(dir, 1) {
		t.Error("pid 42 listed: alone")
	}
	if OnlyProcess(filepath.Join(dir, "missing"), 1) {
		t.Error("unreadable directory: alone")
	}
	// The host this test runs on has more processes than this one.
	if OnlyProcess(DefaultProc, os.Getpid()) {
		t.Error("the host's /proc: alone")
	}
}

// TestDormantWhileAlone: while envd is alone the loop scans once and then
// waits for a Poke (no timer); once another process exists it polls again.
func TestDormantWhileAlone(t *testing.T) {
	leakCheck(t)
	fp := newFakeProc(t)
	var alone atomic.Bool
	var checks atomic.Int64
	alone.Store(true)
	s := New(Config{
		Interval: 5 * time.Millisecond,
		ProcNet:  fp.dir,
		Addrs:    func() ([]netip.Addr, error) { return []netip.Addr{fakeExt}, nil },
		Alone:    func() bool { checks.Add(1); return alone.Load() },
	})
	t.Cleanup(func() { stopWithin(t, s) })
	s.Start()
	if !portstest.Eventually(30*time.Second, func() bool { return checks.Load() >= 1 }) {
		t.Fatal("no scan after Start")
	}
	// A negative check: a slow machine can only make it pass.
	time.Sleep(100 * time.Millisecond)
	if n := checks.Load(); n != 1 {
		t.Fatalf("%d scans while alone, want 1 (dormant)", n)
	}
	_, ap := echoOnLoopback(t, fp)
	time.Sleep(50 * time.Millisecond)
	if slices.Contains(s.Forwarded(), ap.Port()) {
		t.Fatal("a listener was forwarded while dormant, without a poke")
	}
	// A process start pokes: the scan forwards the listener, and with a
	// forwarder the loop polls again (the listener may go away).
	alone.Store(false)
	s.Poke()
	waitForwarded(t, s, ap.Port(), true)
	before := checks.Load()
	fp.remove(ap)
	waitForwarded(t, s, ap.Port(), false)
	// Not alone: polling goes on without pokes.
	if !portstest.Eventually(30*time.Second, func() bool { return checks.Load() > before+3 }) {
		t.Fatal("no polling while another process exists")
	}
	// Alone again: it goes dormant on its own.
	alone.Store(true)
	if !portstest.Eventually(30*time.Second, func() bool {
		n := checks.Load()
		time.Sleep(100 * time.Millisecond)
		return checks.Load() == n
	}) {
		t.Fatal("still polling while alone")
	}
}
