// Package portstest runs a test inside a private network namespace with a
// veth pair to the host, so port-forwarding tests touch only addresses the
// test created. Go cannot move a whole process into a namespace, so the
// test binary re-executes itself under `ip netns exec`.
package portstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
)

// Environment variables that tell the re-executed child where it runs.
const (
	envName = "WRN_TEST_NETNS"
	envHost = "WRN_TEST_NETNS_HOST"
	envNS   = "WRN_TEST_NETNS_ADDR"
)

// Netns is a network namespace linked to the host by a veth pair in a /30.
type Netns struct {
	Name     string
	HostAddr netip.Addr // host end of the veth pair, in the host namespace
	Addr     netip.Addr // namespace end, the namespace's only external address
}

// Child reports whether this process is a test re-executed inside a
// namespace, and which one.
func Child() (Netns, bool) {
	name := os.Getenv(envName)
	if name == "" {
		return Netns{}, false
	}
	host, err1 := netip.ParseAddr(os.Getenv(envHost))
	ns, err2 := netip.ParseAddr(os.Getenv(envNS))
	if err1 != nil || err2 != nil {
		return Netns{}, false
	}
	return Netns{Name: name, HostAddr: host, Addr: ns}, true
}

// RequireRoot skips t unless the process is root (fails in CI).
func RequireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
}

// Create makes a namespace wtn-<random> with lo up and a veth pair with
// addresses 10.241.<r>.<4k+1>/30 (host) and .<4k+2>/30 (namespace); t's
// cleanup deletes both.
func Create(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(rnd[:])
	base := rnd[1] &^ 3
	n := &Netns{
		Name:     "wtn-" + id,
		HostAddr: netip.AddrFrom4([4]byte{10, 241, rnd[0], base + 1}),
		Addr:     netip.AddrFrom4([4]byte{10, 241, rnd[0], base + 2}),
	}
	hostIf, nsIf := "wt"+id+"h", "wt"+id+"n"
	ip(t, "netns", "add", n.Name)
	t.Cleanup(func() { ipQuiet("netns", "del", n.Name) })
	ip(t, "link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", n.Name)
	// Deleting the namespace destroys the pair too; this covers a failure
	// between the two steps.
	t.Cleanup(func() { ipQuiet("link", "del", hostIf) })
	ip(t, "addr", "add", n.HostAddr.String()+"/30", "dev", hostIf)
	ip(t, "link", "set", hostIf, "up")
	ip(t, "-n", n.Name, "addr", "add", n.Addr.String()+"/30", "dev", nsIf)
	ip(t, "-n", n.Name, "link", "set", nsIf, "up")
	ip(t, "-n", n.Name, "link", "set", "lo", "up")
	return n
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func ipQuiet(args ...string) {
	_ = exec.Command("ip", args...).Run()
}

// Command returns a command that re-runs the test t (by name) inside n. The
// child is in its own process group, killed with SIGKILL when ctx ends.
func (n *Netns) Command(ctx context.Context, t testing.TB, env ...string) *exec.Cmd {
	t.Helper()
	var parts []string
	for _, p := range strings.Split(t.Name(), "/") {
		parts = append(parts, "^"+regexp.QuoteMeta(p)+"$")
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.Name,
		os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(),
		envName+"="+n.Name, envHost+"="+n.HostAddr.String(), envNS+"="+n.Addr.String())
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// RunTest runs t inside a fresh namespace. In the child it returns the
// namespace and true: the caller runs the test body. In the parent it runs
// the child to completion (bounded by timeout), fails t if the child
// failed, and returns false.
func RunTest(t *testing.T, timeout time.Duration) (Netns, bool) {
	t.Helper()
	if n, ok := Child(); ok {
		return n, true
	}
	n := Create(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := n.Command(ctx, t)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("child in %s:\n%s", n.Name, tail(out.String(), 200))
	if err != nil {
		t.Fatalf("child test failed: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("child did not run %s", t.Name())
	}
	return Netns{}, false
}

// tail keeps the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("... %d lines omitted\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// Echo is a TCP server that writes back everything it reads.
type Echo struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// NewEcho listens on addr (e.g. "127.0.0.1:0") and serves until Close, which
// t's cleanup also calls.
func NewEcho(t testing.TB, addr string) *Echo {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	e := &Echo{ln: ln, conns: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go e.serve()
	t.Cleanup(e.Close)
	return e
}

// Port returns the listening port.
func (e *Echo) Port() uint16 {
	return uint16(e.ln.Addr().(*net.TCPAddr).Port)
}

func (e *Echo) serve() {
	defer e.wg.Done()
	for {
		c, err := e.ln.Accept()
		if err != nil {
			return
		}
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			_ = c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.wg.Add(1)
		e.mu.Unlock()
		go func() {
			defer e.wg.Done()
			_, _ = io.Copy(c, c)
			_ = c.Close()
			e.mu.Lock()
			delete(e.conns, c)
			e.mu.Unlock()
		}()
	}
}

// Close stops listening, closes every connection and waits; idempotent.
func (e *Echo) Close() {
	_ = e.ln.Close()
	e.mu.Lock()
	e.closed = true
	for c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// Ping connects to addr, sends a line and expects it back within timeout.
func Ping(addr string, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	return Roundtrip(c, "ping "+addr)
}

// Roundtrip writes msg on c and expects to read it back.
func Roundtrip(c net.Conn, msg string) error {
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo mismatch: got %q, want %q", buf, msg)
	}
	return nil
}

// Eventually polls cond every 5 ms until it is true or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// OpenFDs returns how many file descriptors the process has open.
func OpenFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // ReadDir's own descriptor
}

// Children returns the pids of the process's child processes.
func Children(t testing.TB) []string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread exited
		}
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}

// Stacks returns every goroutine's stack, for deadlock reports.
func Stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
