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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// host is one test's agent environment: a data directory, a network prefix
// and subnet of its own, and the running agent process.
type host struct {
	t       *testing.T
	dataDir string
	prefix  string
	subnet  string
	agent   string
	envd    string
	runsc   string
	addr    string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	api     hostagentv1connect.HostAgentServiceClient
}

var subnetSeq atomic.Int32

// newHost prepares an environment and starts the agent. When the test ends
// every capsule is destroyed, the agent stops, and the test fails if
// anything the agent created is left on the machine.
func newHost(t *testing.T) *host {
	t.Helper()
	testutil.Integration(t)
	h := &host{
		t:       t,
		dataDir: t.TempDir(),
		prefix:  testutil.RandomName("wt", 4),
		subnet:  fmt.Sprintf("10.%d.0.0/16", 200+subnetSeq.Add(1)%50),
		agent:   testutil.BuildBinary(t, "./cmd/wrenn-agent"),
		envd:    testutil.BuildBinary(t, testutil.EnvdPackage),
		runsc:   testutil.Runsc(t),
	}
	h.addr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	h.api = hostagentv1connect.NewHostAgentServiceClient(http.DefaultClient, "http://"+h.addr)
	h.start()
	t.Cleanup(h.finish)
	return h
}

// start runs the agent and waits until its API answers.
func (h *host) start() {
	h.t.Helper()
	h.logPath = filepath.Join(h.dataDir, fmt.Sprintf("agent-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(h.logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	h.cmd = exec.Command(h.agent,
		"-listen", h.addr, "-data-dir", h.dataDir, "-runsc", h.runsc, "-envd", h.envd,
		"-net-prefix", h.prefix, "-subnet", h.subnet, "-log-level", "debug", "-metrics-interval", "200ms", "-network-grace", "1s")
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	exited := make(chan struct{})
	h.exited = exited
	go func() { _ = h.cmd.Wait(); logf.Close(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := h.api.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{}))
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			h.t.Fatalf("agent exited at start:\n%s", h.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	h.t.Fatalf("agent API not answering:\n%s", h.logTail())
}

// kill SIGKILLs the agent (capsules keep running).
func (h *host) kill() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
}

// stop ends the agent gracefully (capsules keep running).
func (h *host) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		h.kill()
	}
}

func (h *host) logTail() string {
	b, _ := os.ReadFile(h.logPath)
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return string(b)
}

// finish terminates every capsule through the API and checks the machine.
func (h *host) finish() {
	t := h.t
	select {
	case <-h.exited:
		h.start()
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := h.api.Terminate(ctx, connect.NewRequest(&hav1.TerminateRequest{})); err != nil {
		t.Errorf("Terminate: %v", err)
	}
	select {
	case <-h.exited:
	case <-time.After(15 * time.Second):
		t.Errorf("agent did not exit after Terminate")
		h.kill()
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", h.logTail())
	}
	h.assertClean()
}

// leftovers lists what capsules left behind while the agent runs:
// namespaces, links, set elements, processes, mounts, directories.
func (h *host) leftovers() []string {
	var out []string
	if b, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(b), h.prefix) {
		out = append(out, "network namespaces:\n"+string(b))
	}
	if b, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(b), h.prefix) {
		out = append(out, "links:\n"+string(b))
	}
	if b, _ := exec.Command("nft", "list", "table", "inet", h.prefix).Output(); strings.Contains(string(b), "elements =") {
		out = append(out, "nftables elements:\n"+string(b))
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), h.dataDir) {
		out = append(out, "mounts under "+h.dataDir)
	}
	for _, p := range processesMentioning(h.dataDir) {
		if !strings.HasPrefix(p, fmt.Sprint(h.cmd.Process.Pid)+":") {
			out = append(out, "process "+p)
		}
	}
	for _, d := range []string{"capsules", "runtime"} {
		if ents, _ := os.ReadDir(filepath.Join(h.dataDir, d)); len(ents) > 0 {
			out = append(out, fmt.Sprintf("%d %s directories", len(ents), d))
		}
	}
	return out
}

// assertNoCapsules waits briefly (networks go right after a destroy
// answered) and fails the test if capsules left anything behind.
func (h *host) assertNoCapsules(t *testing.T) {
	t.Helper()
	eventually(t, 10*time.Second, "capsules leave nothing behind", func() error {
		if l := h.leftovers(); len(l) > 0 {
			return fmt.Errorf("left behind:\n%s", strings.Join(l, "\n"))
		}
		return nil
	})
}

// assertClean fails the test if anything the agent creates is left.
func (h *host) assertClean() {
	t := h.t
	t.Helper()
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), h.prefix) {
		t.Errorf("network namespaces left:\n%s", out)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(out), h.prefix) {
		t.Errorf("links left:\n%s", out)
	}
	if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), h.prefix) {
		t.Errorf("nftables tables left:\n%s", out)
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), h.dataDir) {
		t.Errorf("mounts left under %s", h.dataDir)
	}
	if procs := processesMentioning(h.dataDir); len(procs) > 0 {
		t.Errorf("processes left: %v", procs)
	}
	if ents, _ := os.ReadDir(filepath.Join(h.dataDir, "capsules")); len(ents) > 0 {
		t.Errorf("capsule directories left: %d", len(ents))
	}
}

// processesMentioning lists processes whose command line contains s.
func processesMentioning(s string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || e.Name() == fmt.Sprint(os.Getpid()) {
			continue
		}
		if cmd := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(cmd, s) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
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
	res, err := h.api.CreateSandbox(ctxT(t, time.Minute), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("CreateSandbox: %v\n%s", err, h.logTail())
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
	res, err := h.api.Exec(ctxT(t, time.Minute), connect.NewRequest(&hav1.ExecRequest{SandboxId: id, Cmd: "/bin/sh", Args: []string{"-c", script}, TimeoutSec: 30}))
	if err != nil {
		return "", -1, err
	}
	return string(res.Msg.Stdout) + string(res.Msg.Stderr), res.Msg.ExitCode, nil
}

// httpGet fetches url from the host with a short timeout.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
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
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
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
	st, err := h.api.PtyAttach(ctx, connect.NewRequest(req))
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
	eventually(t, 10*time.Second, "PTY output "+strconvQuote(s), func() error {
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
