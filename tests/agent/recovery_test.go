package agent_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
)

func (h *host) list(t *testing.T) *hav1.ListSandboxesResponse {
	t.Helper()
	res, err := h.api.ListSandboxes(ctxT(t, time.Minute), connect.NewRequest(&hav1.ListSandboxesRequest{}))
	if err != nil {
		t.Fatalf("ListSandboxes: %v", err)
	}
	return res.Msg
}

func (h *host) status(t *testing.T, id string) (hav1.SandboxStatus, bool) {
	t.Helper()
	for _, s := range h.list(t).Sandboxes {
		if s.SandboxId == id {
			return s.Status, true
		}
	}
	return 0, false
}

// The agent restarts (gracefully and by SIGKILL) without disturbing
// running capsules, and paused capsules stay resumable.
func TestAgentRestart(t *testing.T) {
	h := newHost(t)
	running := h.create(t, nil)
	paused := h.create(t, nil)
	h.startWorkload(t, running.SandboxId).close()
	before := h.waitCounterAbove(t, running.SandboxId, 0)
	if _, err := h.api.PauseSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: paused.SandboxId})); err != nil {
		t.Fatal(err)
	}
	for _, restart := range []func(){h.stop, h.kill} {
		restart()
		h.start()
		if st, ok := h.status(t, running.SandboxId); !ok || st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
			t.Fatalf("running capsule after restart: %v %v", st, ok)
		}
		if st, ok := h.status(t, paused.SandboxId); !ok || st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
			t.Fatalf("paused capsule after restart: %v %v", st, ok)
		}
		before = h.checkWorkload(t, running.SandboxId, running.HostIp, before, 1)
	}
	if _, err := h.api.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: paused.SandboxId})); err != nil {
		t.Fatalf("resume after restarts: %v", err)
	}
	h.exec(t, paused.SandboxId, "true")
}

// SIGKILL of the agent in the middle of creates and pauses loses no paused
// capsule and leaks nothing (the cleanup check runs when the test ends).
func TestAgentKilledMidOperation(t *testing.T) {
	h := newHost(t)
	for _, delay := range []time.Duration{5 * time.Millisecond, 40 * time.Millisecond, 120 * time.Millisecond, 300 * time.Millisecond} {
		// Mid-create.
		id := newID()
		go func() {
			_, _ = h.api.CreateSandbox(context.Background(), connect.NewRequest(&hav1.CreateSandboxRequest{SandboxId: id, Vcpus: 1, MemoryMb: 128, TemplateId: "minimal"}))
		}()
		time.Sleep(delay)
		h.kill()
		h.start()
		if st, ok := h.status(t, id); ok {
			if st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
				t.Fatalf("delay %v: capsule killed mid-create is %v", delay, st)
			}
			h.exec(t, id, "true")
		}

		// Mid-pause.
		c := h.create(t, nil)
		h.exec(t, c.SandboxId, "echo keep > /root/keep")
		go func() {
			_, _ = h.api.PauseSandbox(context.Background(), connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: c.SandboxId}))
		}()
		time.Sleep(delay)
		h.kill()
		h.start()
		st, ok := h.status(t, c.SandboxId)
		if !ok {
			t.Fatalf("delay %v: capsule killed mid-pause was lost", delay)
		}
		if st == hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
			if _, err := h.api.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: c.SandboxId})); err != nil {
				t.Fatalf("delay %v: resume after crash: %v\n%s", delay, err, h.logTail())
			}
		}
		if got := h.exec(t, c.SandboxId, "cat /root/keep"); got != "keep\n" {
			t.Fatalf("delay %v: file after crash: %q", delay, got)
		}
	}
}

// An idle capsule is paused after its timeout and reported once.
func TestInactivityPause(t *testing.T) {
	h := newHost(t)
	idle := h.create(t, func(r *hav1.CreateSandboxRequest) { r.TimeoutSec = 2 })
	busy := h.create(t, func(r *hav1.CreateSandboxRequest) { r.TimeoutSec = 2 })
	h.exec(t, idle.SandboxId, "echo before > /root/f")
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := h.api.PingSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.PingSandboxRequest{SandboxId: busy.SandboxId})); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	l := h.list(t)
	if !slices.Contains(l.AutoPausedSandboxIds, idle.SandboxId) || slices.Contains(l.AutoPausedSandboxIds, busy.SandboxId) {
		t.Fatalf("auto-paused %v; idle %s busy %s", l.AutoPausedSandboxIds, idle.SandboxId, busy.SandboxId)
	}
	if len(h.list(t).AutoPausedSandboxIds) != 0 {
		t.Fatal("auto-paused ids not drained on read")
	}
	if st, _ := h.status(t, idle.SandboxId); st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
		t.Fatalf("idle capsule is %v", st)
	}
	// After the grace period (1 s here) the paused capsule's network is
	// released.
	eventually(t, 5*time.Second, "network of the paused capsule released", func() error {
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), idle.SandboxId) {
			return fmt.Errorf("namespace still there:\n%s", out)
		}
		return nil
	})
	if st, _ := h.status(t, busy.SandboxId); st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
		t.Fatalf("pinged capsule is %v", st)
	}
	if _, err := h.api.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: idle.SandboxId, TimeoutSec: 600})); err != nil {
		t.Fatal(err)
	}
	if got := h.exec(t, idle.SandboxId, "cat /root/f"); got != "before\n" {
		t.Fatalf("file after auto-pause: %q", got)
	}
}

// The agent samples every running capsule's CPU, memory and disk.
func TestMetrics(t *testing.T) {
	h := newHost(t)
	c := h.create(t, nil)
	h.exec(t, c.SandboxId, "end=$(($(date +%s)+2)); while [ $(date +%s) -lt $end ]; do :; done; dd if=/dev/zero of=/root/blob bs=1M count=8 2>/dev/null")
	var pts []*hav1.MetricPoint
	eventually(t, 10*time.Second, "metric points", func() error {
		res, err := h.api.GetSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: c.SandboxId, Range: hav1.MetricsRange_METRICS_RANGE_10M}))
		if err != nil {
			return err
		}
		pts = res.Msg.Points
		var busy, mem bool
		for _, p := range pts {
			busy = busy || p.CpuPct > 20
			mem = mem || p.MemBytes > 1<<20
		}
		if !busy || !mem {
			return fmt.Errorf("%d points, none with CPU > 20%% and memory > 1 MiB: %v", len(pts), pts)
		}
		return nil
	})
	flushed, err := h.api.FlushSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.FlushSandboxMetricsRequest{SandboxId: c.SandboxId}))
	if err != nil || len(flushed.Msg.Points_10M) < len(pts) {
		t.Fatalf("flush: %v, %d points", err, len(flushed.Msg.GetPoints_10M()))
	}
	if _, err := h.api.GetSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: c.SandboxId, Range: hav1.MetricsRange_METRICS_RANGE_24H})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.api.GetSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: newID()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("metrics of an unknown capsule: %v", err)
	}
}

// A capsule's disk is bounded by disk_size_mb.
func TestDiskLimit(t *testing.T) {
	h := newHost(t)
	c := h.create(t, func(r *hav1.CreateSandboxRequest) { r.DiskSizeMb = 256 })
	out, code, err := h.tryExec(t, c.SandboxId, "dd if=/dev/zero of=/root/big bs=1M count=400 2>&1")
	if err != nil {
		t.Fatal(err)
	}
	if code == 0 || !strings.Contains(out, "No space left") {
		t.Fatalf("wrote 400 MiB into a 256 MiB disk: code %d, %s", code, out)
	}
	// The capsule still works and small writes succeed after cleanup.
	h.exec(t, c.SandboxId, "rm /root/big && echo ok > /root/small")
}
