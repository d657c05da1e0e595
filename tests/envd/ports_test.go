package envd_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/testutil"
)

// echoServer listens only on loopback and echoes one line per connection.
const echoServer = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.makefile("rb").readline())
    c.close()
`

// TestPortForwarding runs envd in its own network namespace and reaches a
// loopback-only server inside through envd's forwarder from the host.
func TestPortForwarding(t *testing.T) {
	t.Parallel()
	testutil.Integration(t)
	ns := testutil.NewNetns(t)
	e := newEnv(testutil.StartEnvdWith(t, testutil.EnvdOptions{
		Netns: ns.Name,
		Host:  ns.InsideIP,
		Args:  []string{"-forward-ports=true", "-port-scan-interval", "100ms"},
	}))

	const port = 18080
	p := startBG(t, e.proc, &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/usr/bin/python3", Args: []string{"-c", echoServer, strconv.Itoa(port)}},
		Stdin:   ptr(false),
	})
	target := net.JoinHostPort(ns.InsideIP, strconv.Itoa(port))
	echo := func() error {
		c, err := net.DialTimeout("tcp", target, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "ping %d\n", port); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read echo: %w", err)
		}
		if line != fmt.Sprintf("ping %d\n", port) {
			return fmt.Errorf("echo %q", line)
		}
		return nil
	}
	forwarded := func(want bool) func() bool {
		return func() bool { return (echo() == nil) == want }
	}

	eventually(t, 30*time.Second, "loopback server reachable from the host", forwarded(true))

	if r := request(t, e, http.MethodPost, "/snapshot/prepare", nil); r.StatusCode != 204 {
		t.Fatalf("/snapshot/prepare: %d", r.StatusCode)
	}
	eventually(t, 30*time.Second, "forward closed by /snapshot/prepare", forwarded(false))
	// A negative check over several scan intervals: a slow machine can
	// only make it pass.
	time.Sleep(300 * time.Millisecond)
	if echo() == nil {
		t.Fatal("port forwarded again without /init")
	}

	if r := request(t, e, http.MethodPost, "/init", nil); r.StatusCode != 204 {
		t.Fatalf("/init: %d", r.StatusCode)
	}
	eventually(t, 30*time.Second, "forward restored by /init", forwarded(true))

	if err := kill(t, e.proc, p.pid, process.Signal_SIGNAL_SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 30*time.Second)
	eventually(t, 30*time.Second, "forward gone with the server", func() bool {
		err := echo()
		return err != nil && !strings.Contains(err.Error(), "echo")
	})
	e.requireHealthy(t)
}
