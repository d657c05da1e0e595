package portstest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
)

// Cycler drives Stop→Start cycles against a port subsystem.
type Cycler struct {
	Ext       netip.Addr
	Start     func()
	Stop      func()
	Forwarded func() []uint16
	// Opened and Closed, if set, are told about the test's loopback
	// listeners (for a fake socket table).
	Opened, Closed func(netip.AddrPort)
}

type cycleListener struct {
	echo *Echo
	ap   netip.AddrPort
}

// Run runs cycles cycles; the whole run is bounded by a timeout so a
// deadlock fails the test with every goroutine's stack.
func (c *Cycler) Run(t *testing.T, cycles int) {
	// Warm up the netpoller so its descriptors are in the baseline.
	warm := NewEcho(t, "127.0.0.1:0")
	warm.Close()
	fdsBefore := OpenFDs(t)

	var live []cycleListener
	used := map[uint16]bool{}
	open := func() {
		e := NewEcho(t, "127.0.0.1:0")
		ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), e.Port())
		if c.Opened != nil {
			c.Opened(ap)
		}
		used[ap.Port()] = true
		live = append(live, cycleListener{e, ap})
	}
	closeOne := func(i int) {
		l := live[i]
		if c.Closed != nil {
			c.Closed(l.ap)
		}
		l.echo.Close()
		live = slices.Delete(live, i, i+1)
	}
	ext := func(port uint16) string { return netip.AddrPortFrom(c.Ext, port).String() }

	errc := make(chan error, 1)
	go func() {
		errc <- func() error {
			var held []net.Conn // proxied connections open across a Stop
			for i := range cycles {
				c.Stop()
				if got := c.Forwarded(); len(got) != 0 {
					return fmt.Errorf("cycle %d: forwarded after Stop: %v", i, got)
				}
				for _, h := range held {
					_ = h.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := h.Read(make([]byte, 1)); err == nil || isTimeout(err) {
						return fmt.Errorf("cycle %d: proxied connection survived Stop (read: %v)", i, err)
					}
					h.Close()
				}
				held = held[:0]
				switch {
				case i%3 == 0 && len(live) < 4:
					open()
				case i%3 == 1 && len(live) > 0:
					closeOne(rand.IntN(len(live)))
				}
				c.Start()
				if i%25 == 0 {
					for _, l := range live {
						ok := Eventually(5*time.Second, func() bool {
							return slices.Contains(c.Forwarded(), l.ap.Port())
						})
						if !ok {
							return fmt.Errorf("cycle %d: port %d not forwarded (have %v)", i, l.ap.Port(), c.Forwarded())
						}
						conn, err := net.DialTimeout("tcp4", ext(l.ap.Port()), 2*time.Second)
						if err != nil {
							return fmt.Errorf("cycle %d: dial %s: %w", i, ext(l.ap.Port()), err)
						}
						_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
						if err := Roundtrip(conn, fmt.Sprintf("cycle %d", i)); err != nil {
							conn.Close()
							return fmt.Errorf("cycle %d: through %s: %w", i, ext(l.ap.Port()), err)
						}
						held = append(held, conn)
					}
				}
				// Let some scans run, and change listeners while running.
				if i%7 == 0 {
					time.Sleep(time.Duration(rand.IntN(8)) * time.Millisecond)
				}
				if i%11 == 0 && len(live) > 0 {
					closeOne(0)
				}
			}
			c.Stop()
			for _, h := range held {
				h.Close()
			}
			return nil
		}()
	}()
	select {
	case err := <-errc:
		if err != nil {
			c.Stop()
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("cycles did not finish in 2 minutes (deadlock?):\n%s", Stacks())
	}

	for len(live) > 0 {
		closeOne(0)
	}
	if got := c.Forwarded(); len(got) != 0 {
		t.Errorf("forwarded after the final Stop: %v", got)
	}
	for port := range used {
		if !PortFree(ext(port)) {
			t.Errorf("forwarding listener on %s left open", ext(port))
		}
	}
	if kids := Children(t); len(kids) != 0 {
		t.Errorf("child processes left: %v", kids)
	}
	// io.Copy between TCP connections splices through pooled pipes that
	// only a GC releases; closed sockets may take a moment to go.
	if !Eventually(2*time.Second, func() bool {
		runtime.GC()
		return OpenFDs(t) <= fdsBefore
	}) {
		t.Errorf("open fds: %d after the cycles, %d before", OpenFDs(t), fdsBefore)
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			l, _ := os.Readlink("/proc/self/fd/" + e.Name())
			t.Logf("fd %s -> %s", e.Name(), l)
		}
	}
	t.Logf("%d cycles, %d distinct ports", cycles, len(used))
}

// PortFree reports whether nothing listens on addr (host:port, IPv4).
func PortFree(addr string) bool {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
