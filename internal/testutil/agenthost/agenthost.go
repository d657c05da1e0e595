// Package agenthost runs a real wrenn-agent for control-plane tests: its own data directory, network
// prefix and subnet, real runsc capsules. When the test ends the agent is terminated (every capsule
// destroyed) and the test fails if anything the agent created is left on the machine.
package agenthost

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/testutil"
)

// Options tune an agent.
type Options struct {
	// Args are extra wrenn-agent flags (e.g. registration with a control plane).
	Args []string
	// NoWait skips waiting for the plain API to answer (agents that only serve mutual TLS).
	NoWait bool
	// Netns runs the agent inside this network namespace (/run/netns/<Netns>).
	Netns string
	// Addr is the listen address; default 127.0.0.1:<free port>.
	Addr string
}

// Host is one running agent.
type Host struct {
	t       testing.TB
	opts    Options
	DataDir string
	Prefix  string // network prefix of everything the agent creates
	Subnet  string
	Addr    string // host:port of its API
	// API is a plain (h2c) client of the agent; nil-safe only for agents that serve plain HTTP.
	API hostagentv1connect.HostAgentServiceClient

	binary, envd, runsc string
	cmd                 *exec.Cmd
	exited              chan struct{}
	logPath             string
}

// Start builds (once per test binary) and starts an agent.
func Start(t testing.TB, opts Options) *Host {
	t.Helper()
	testutil.Integration(t)
	h := &Host{
		t:       t,
		opts:    opts,
		DataDir: t.TempDir(),
		Prefix:  testutil.RandomName("wc", 4),
		Subnet:  testutil.Subnet(t),
		binary:  testutil.BuildBinary(t, "./cmd/wrenn-agent"),
		envd:    testutil.BuildBinary(t, testutil.EnvdPackage),
		runsc:   testutil.Runsc(t),
	}
	h.Addr = opts.Addr
	if h.Addr == "" {
		h.Addr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	}
	h.API = hostagentv1connect.NewHostAgentServiceClient(http.DefaultClient, "http://"+h.Addr)
	h.Start()
	t.Cleanup(h.finish)
	return h
}

// Start (re)starts the agent process and, unless NoWait, waits until its API answers.
func (h *Host) Start() {
	h.t.Helper()
	h.logPath = filepath.Join(h.DataDir, fmt.Sprintf("agent-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(h.logPath)
	if err != nil {
		h.t.Fatal(err)
	}
	args := []string{
		"-listen", h.Addr, "-data-dir", h.DataDir, "-runsc", h.runsc, "-envd", h.envd,
		"-net-prefix", h.Prefix, "-subnet", h.Subnet, "-log-level", "debug",
		"-metrics-interval", "200ms", "-network-grace", "1s",
	}
	args = append(args, h.opts.Args...)
	if h.opts.Netns != "" {
		// nsenter switches only the network namespace; `ip netns exec` would also remount /sys, hiding
		// the cgroup hierarchies runsc needs.
		h.cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + h.opts.Netns, h.binary}, args...)...)
	} else {
		h.cmd = exec.Command(h.binary, args...)
	}
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	exited := make(chan struct{})
	h.exited = exited
	go func() { _ = h.cmd.Wait(); logf.Close(); close(exited) }()
	if h.opts.NoWait {
		return
	}
	// Generous: startup sets up the network and adopts running capsules (runsc) first.
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := h.API.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{}))
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			h.t.Fatalf("agent exited at start:\n%s", h.LogTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	h.t.Fatalf("agent API not answering:\n%s", h.LogTail())
}

// Running reports whether the agent process is alive.
func (h *Host) Running() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// Exited is closed when the agent process ends.
func (h *Host) Exited() <-chan struct{} { return h.exited }

// Kill SIGKILLs the agent (capsules keep running).
func (h *Host) Kill() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.exited
}

// Stop ends the agent gracefully (capsules keep running).
func (h *Host) Stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(60 * time.Second): // a graceful stop pauses capsules first
		h.Kill()
	}
}

// LogTail returns the last 16 KiB of the agent's log.
func (h *Host) LogTail() string {
	b, _ := os.ReadFile(h.logPath)
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return string(b)
}

// finish terminates every capsule and checks the machine. Terminate goes over the plain API when the
// agent serves one; an agent that serves only mutual TLS is stopped with SIGTERM after the test's own
// cleanup destroyed its capsules, then cleaned by a plain restart + Terminate.
func (h *Host) finish() {
	t := h.t
	if !h.Running() || h.opts.NoWait {
		if h.Running() {
			h.Stop()
		}
		// Restart without registration, on a plain loopback listener in the host's namespace (capsule
		// namespaces and tables are global), so Terminate can clean up what is left.
		h.opts = Options{}
		h.Addr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
		h.API = hostagentv1connect.NewHostAgentServiceClient(http.DefaultClient, "http://"+h.Addr)
		h.Start()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := h.API.Terminate(ctx, connect.NewRequest(&hav1.TerminateRequest{})); err != nil {
		t.Errorf("Terminate: %v", err)
	}
	select {
	case <-h.exited:
	case <-time.After(60 * time.Second):
		t.Errorf("agent did not exit after Terminate")
		h.Kill()
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", h.LogTail())
	}
	h.AssertClean(t)
}

// Leftovers lists what capsules left behind while the agent runs: namespaces, links, nftables set
// elements, mounts, processes other than the agent, capsule and runtime directories.
func (h *Host) Leftovers() []string {
	var out []string
	if b, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(b), h.Prefix) {
		out = append(out, "network namespaces:\n"+string(b))
	}
	if b, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(b), h.Prefix) {
		out = append(out, "links:\n"+string(b))
	}
	if b, _ := exec.Command("nft", "list", "table", "inet", h.Prefix).Output(); strings.Contains(string(b), "elements =") {
		out = append(out, "nftables elements:\n"+string(b))
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), h.DataDir) {
		out = append(out, "mounts under "+h.DataDir)
	}
	for _, p := range processesMentioning(h.DataDir) {
		if !strings.HasPrefix(p, fmt.Sprint(h.cmd.Process.Pid)+":") {
			out = append(out, "process "+p)
		}
	}
	for _, d := range []string{"capsules", "runtime", "pool", "forks"} {
		if ents, _ := os.ReadDir(filepath.Join(h.DataDir, d)); len(ents) > 0 {
			out = append(out, fmt.Sprintf("%d %s directories", len(ents), d))
		}
	}
	return out
}

// Binary is the wrenn-agent binary.
func (h *Host) Binary() string { return h.binary }

// Envd is the envd binary capsules run.
func (h *Host) Envd() string { return h.envd }

// AssertClean fails t if anything the agent creates is left: namespaces, links, nftables tables,
// mounts, processes or capsule directories.
func (h *Host) AssertClean(t testing.TB) {
	t.Helper()
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), h.Prefix) {
		t.Errorf("network namespaces left:\n%s", out)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(out), h.Prefix) {
		t.Errorf("links left:\n%s", out)
	}
	if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), h.Prefix) {
		t.Errorf("nftables tables left:\n%s", out)
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), h.DataDir) {
		t.Errorf("mounts left under %s", h.DataDir)
	}
	if procs := processesMentioning(h.DataDir); len(procs) > 0 {
		t.Errorf("processes left: %v", procs)
	}
	for _, d := range []string{"capsules", "pool", "forks"} {
		if ents, _ := os.ReadDir(filepath.Join(h.DataDir, d)); len(ents) > 0 {
			t.Errorf("%s directories left: %d", d, len(ents))
		}
	}
}

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
