package ports

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/envd/ports/portstest"
)

// TestNetnsForward runs the real subsystem (real /proc, real interfaces) in
// a namespace of its own, binds 127.0.0.1:<port> there, and reaches it from
// the host through the namespace's veth address.
func TestNetnsForward(t *testing.T) {
	if n, ok := portstest.Child(); ok {
		netnsForwardChild(t, n)
		return
	}
	portstest.RequireRoot(t)
	n := portstest.Create(t)
	port := 20000 + rand.IntN(20000)
	target := netip.AddrPortFrom(n.Addr, uint16(port)).String()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := n.Command(ctx, t, "WRN_TEST_PORT="+strconv.Itoa(port))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	var out strings.Builder
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	finish := func() error {
		stdin.Close()
		<-readDone
		err := cmd.Wait()
		t.Logf("child output:\n%s", out.String())
		return err
	}
	expect := func(want string) {
		t.Helper()
		for {
			select {
			case l := <-lines:
				if l == want {
					return
				}
			case <-time.After(30 * time.Second):
				cancel()
				_ = finish()
				t.Fatalf("child did not print %q", want)
			}
		}
	}

	expect("READY")
	if err := portstest.Ping(target, 30*time.Second); err != nil {
		cancel()
		_ = finish()
		t.Fatalf("from the host to %s: %v", target, err)
	}
	fmt.Fprintln(stdin, "close")
	expect("CLOSED")
	if c, err := net.DialTimeout("tcp", target, 2*time.Second); err == nil {
		c.Close()
		cancel()
		_ = finish()
		t.Fatalf("%s still accepts connections after the loopback listener closed", target)
	}
	if err := finish(); err != nil {
		t.Fatalf("child failed: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatal("child test did not pass")
	}
}

func netnsForwardChild(t *testing.T, n portstest.Netns) {
	leakCheck(t)
	port, err := strconv.Atoi(os.Getenv("WRN_TEST_PORT"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := ExternalAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ext, []netip.Addr{n.Addr}) {
		t.Fatalf("ExternalAddrs in the namespace = %v, want [%s]", ext, n.Addr)
	}
	s := New(Config{Interval: 20 * time.Millisecond})
	t.Cleanup(func() { stopWithin(t, s) })
	e := portstest.NewEcho(t, fmt.Sprintf("127.0.0.1:%d", port))
	// A port on the wildcard address is not the forwarder's business.
	wild := portstest.NewEcho(t, "0.0.0.0:0")
	s.Start()
	waitForwarded(t, s, uint16(port), true)
	if got := s.Forwarded(); slices.Contains(got, wild.Port()) {
		t.Fatalf("wildcard port %d forwarded: %v", wild.Port(), got)
	}
	fmt.Println("READY")

	sc := bufio.NewScanner(os.Stdin)
	if !sc.Scan() || sc.Text() != "close" {
		t.Fatalf("expected close command, got %q", sc.Text())
	}
	e.Close()
	waitForwarded(t, s, uint16(port), false)
	if !portstest.PortFree(netip.AddrPortFrom(n.Addr, uint16(port)).String()) {
		t.Fatal("forwarding listener still open")
	}
	fmt.Println("CLOSED")
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin when done
	stopWithin(t, s)
}
