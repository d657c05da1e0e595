// Package agent_test drives the real wrenn-agent binary through its Connect
// API: real runsc sandboxes, real network namespaces and nftables, the real
// envd inside every capsule.
package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// host is one test's agent (internal/testutil/agenthost: its own data directory, network prefix and
// subnet; every capsule destroyed and the machine checked when the test ends) with the helpers the
// tests share.
type host struct {
	*agenthost.Host
	t *testing.T
}

func newHost(t *testing.T) *host {
	t.Helper()
	return &host{Host: agenthost.Start(t, agenthost.Options{}), t: t}
}

// assertNoCapsules waits briefly (networks go right after a destroy
// answered) and fails the test if capsules left anything behind.
func (h *host) assertNoCapsules(t *testing.T) {
	t.Helper()
	eventually(t, 60*time.Second, "capsules leave nothing behind", func() error {
		if l := h.Leftovers(); len(l) > 0 {
			return fmt.Errorf("left behind:\n%s", strings.Join(l, "\n"))
		}
		return nil
	})
}

var idSeq atomic.Int64

// newID returns a fresh capsule id (cl- + 25 base36 chars).
func newID() string {
	n := time.Now().UnixNano() + idSeq.Add(1)
	s := strings.Repeat("0", 25) + fmt.Sprintf("%x", n)
	return "cl-" + s[len(s)-25:]
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// create makes a capsule from the minimal image.
func (h *host) create(t *testing.T, mod func(*hav1.CreateSandboxRequest)) *hav1.CreateSandboxResponse {
	t.Helper()
	req := &hav1.CreateSandboxRequest{SandboxId: newID(), Vcpus: 1, MemoryMb: 256, TemplateId: "minimal", DefaultUser: "root"}
	if mod != nil {
		mod(req)
	}
	limit := 2 * time.Minute
	if req.TemplateId == "base" {
		limit = 30 * time.Minute // the first capsule from base builds the Debian image (debootstrap)
	}
	res, err := h.API.CreateSandbox(ctxT(t, limit), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("CreateSandbox: %v\n%s", err, h.LogTail())
	}
	return res.Msg
}

// exec runs a shell command in a capsule and returns stdout; a non-zero
// exit fails the test.
func (h *host) exec(t *testing.T, id, script string) string {
	t.Helper()
	out, code, err := h.tryExec(t, id, script)
	if err != nil || code != 0 {
		t.Fatalf("exec %q in %s: code %d, %v\n%s", script, id, code, err, out)
	}
	return out
}

func (h *host) tryExec(t *testing.T, id, script string) (string, int32, error) {
	t.Helper()
	res, err := h.API.Exec(ctxT(t, time.Minute), connect.NewRequest(&hav1.ExecRequest{SandboxId: id, Cmd: "/bin/sh", Args: []string{"-c", script}, TimeoutSec: 30}))
	if err != nil {
		return "", -1, err
	}
	return string(res.Msg.Stdout) + string(res.Msg.Stderr), res.Msg.ExitCode, nil
}

// httpGet fetches url from the host with a short timeout.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		return string(b), fmt.Errorf("status %d", res.StatusCode)
	}
	return string(b), err
}

// eventually retries f until it succeeds or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tcpDial reports whether addr accepts a TCP connection from the host.
func tcpDial(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// pty is an attached PTY stream whose output is collected in the
// background.
type pty struct {
	cancel  context.CancelFunc
	mu      sync.Mutex
	out     strings.Builder
	started *hav1.PtyStarted
	startc  chan struct{}
	done    chan struct{}
	err     error
}

// attachPTY starts (cmd set) or reattaches (cmd empty) the PTY tag.
func (h *host) attachPTY(t *testing.T, id, tag, cmd string) *pty {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := &hav1.PtyAttachRequest{SandboxId: id, Tag: tag, Cols: 80, Rows: 24}
	if cmd != "" {
		req.Cmd = cmd
	}
	st, err := h.API.PtyAttach(ctx, connect.NewRequest(req))
	if err != nil {
		cancel()
		t.Fatalf("PtyAttach: %v", err)
	}
	p := &pty{cancel: cancel, startc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for st.Receive() {
			ev := st.Msg()
			p.mu.Lock()
			switch {
			case ev.GetStarted() != nil:
				p.started = ev.GetStarted()
				close(p.startc)
			case ev.GetOutput() != nil:
				p.out.Write(ev.GetOutput().GetData())
			}
			p.mu.Unlock()
		}
		p.mu.Lock()
		p.err = st.Err()
		p.mu.Unlock()
	}()
	select {
	case <-p.startc:
	case <-p.done:
		t.Fatalf("PtyAttach ended before started: %v", p.err)
	case <-time.After(30 * time.Second):
		t.Fatal("PtyAttach: no started event")
	}
	t.Cleanup(p.close)
	return p
}

func (p *pty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *pty) close() {
	p.cancel()
	<-p.done
}

// waitFor waits until the PTY printed s.
func (p *pty) waitFor(t *testing.T, s string) {
	t.Helper()
	eventually(t, 30*time.Second, "PTY output "+strconvQuote(s), func() error {
		if strings.Contains(p.output(), s) {
			return nil
		}
		return fmt.Errorf("not yet; output so far %q", tail(p.output(), 300))
	})
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
