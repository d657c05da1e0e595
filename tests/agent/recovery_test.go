package agent_test

import (
	"context"
	"fmt"
	"math"
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
	res, err := h.API.ListSandboxes(ctxT(t, time.Minute), connect.NewRequest(&hav1.ListSandboxesRequest{}))
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
	if _, err := h.API.PauseSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: paused.SandboxId})); err != nil {
		t.Fatal(err)
	}
	for _, restart := range []func(){h.Stop, h.Kill} {
		restart()
		h.Start()
		if st, ok := h.status(t, running.SandboxId); !ok || st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
			t.Fatalf("running capsule after restart: %v %v", st, ok)
		}
		if st, ok := h.status(t, paused.SandboxId); !ok || st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
			t.Fatalf("paused capsule after restart: %v %v", st, ok)
		}
		before = h.checkWorkload(t, running.SandboxId, running.HostIp, before, 1)
	}
	if _, err := h.API.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: paused.SandboxId})); err != nil {
		t.Fatalf("resume after restarts: %v", err)
	}
	h.exec(t, paused.SandboxId, "true")
}

// SIGKILL of the agent in the middle of creates and pauses loses no paused
// capsule and leaks nothing (the cleanup check runs when the test ends).
func TestAgentKilledMidOperation(t *testing.T) {
	h := newHost(t)
	// The delays only spread the kills over the operations; a slow machine
	// shifts where they land, and every landing must be safe.
	for _, delay := range []time.Duration{5 * time.Millisecond, 40 * time.Millisecond, 120 * time.Millisecond, 300 * time.Millisecond} {
		// Mid-create.
		id := newID()
		go func() {
			_, _ = h.API.CreateSandbox(context.Background(), connect.NewRequest(&hav1.CreateSandboxRequest{SandboxId: id, Vcpus: 1, MemoryMb: 128, TemplateId: "minimal"}))
		}()
		time.Sleep(delay)
		h.Kill()
		h.Start()
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
			_, _ = h.API.PauseSandbox(context.Background(), connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: c.SandboxId}))
		}()
		time.Sleep(delay)
		h.Kill()
		h.Start()
		st, ok := h.status(t, c.SandboxId)
		if !ok {
			t.Fatalf("delay %v: capsule killed mid-pause was lost", delay)
		}
		if st == hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
			if _, err := h.API.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: c.SandboxId})); err != nil {
				t.Fatalf("delay %v: resume after crash: %v\n%s", delay, err, h.LogTail())
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
	// Ping the busy one (well inside its timeout) until the idle one is
	// reported paused, and for at least 5 s (more than two timeouts).
	start := time.Now()
	var auto []string
	for len(auto) == 0 || time.Since(start) < 5*time.Second {
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("idle capsule %s not reported auto-paused", idle.SandboxId)
		}
		if _, err := h.API.PingSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.PingSandboxRequest{SandboxId: busy.SandboxId})); err != nil {
			t.Fatal(err)
		}
		if len(auto) == 0 {
			auto = h.list(t).AutoPausedSandboxIds
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !slices.Contains(auto, idle.SandboxId) || slices.Contains(auto, busy.SandboxId) {
		t.Fatalf("auto-paused %v; idle %s busy %s", auto, idle.SandboxId, busy.SandboxId)
	}
	if len(h.list(t).AutoPausedSandboxIds) != 0 {
		t.Fatal("auto-paused ids not drained on read")
	}
	if st, _ := h.status(t, idle.SandboxId); st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
		t.Fatalf("idle capsule is %v", st)
	}
	// After the grace period (1 s here) the paused capsule's network is
	// released.
	eventually(t, 60*time.Second, "network of the paused capsule released", func() error {
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), idle.SandboxId) {
			return fmt.Errorf("namespace still there:\n%s", out)
		}
		return nil
	})
	if st, _ := h.status(t, busy.SandboxId); st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
		t.Fatalf("pinged capsule is %v", st)
	}
	if _, err := h.API.ResumeSandbox(ctxT(t, time.Minute), connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: idle.SandboxId, TimeoutSec: 600})); err != nil {
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
	eventually(t, 60*time.Second, "metric points", func() error {
		res, err := h.API.GetSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: c.SandboxId, Range: hav1.MetricsRange_METRICS_RANGE_10M}))
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
	// Sub-second samples (the harness samples every 200 ms): more points
	// than seconds they cover.
	if span := pts[len(pts)-1].Ts - pts[0].Ts + 1; int64(len(pts)) <= span {
		t.Fatalf("%d points over %d s", len(pts), span)
	}
	flushed, err := h.API.FlushSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.FlushSandboxMetricsRequest{SandboxId: c.SandboxId}))
	if err != nil || len(flushed.Msg.Points_10M) < len(pts) {
		t.Fatalf("flush: %v, %d points", err, len(flushed.Msg.GetPoints_10M()))
	}
	// The coarse tiers average the samples of aligned 30 s and 5 min
	// buckets (the one still filling included); the capsule is younger
	// than 10 min, so the 10m tier holds every sample.
	checkAverages(t, "2h", flushed.Msg.Points_10M, flushed.Msg.Points_2H, 30)
	checkAverages(t, "24h", flushed.Msg.Points_10M, flushed.Msg.Points_24H, 300)
	if res, err := h.API.GetSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: c.SandboxId})); err != nil || len(res.Msg.Points) > 10 {
		t.Fatalf("metrics right after a flush: %v, %d points", err, len(res.Msg.GetPoints()))
	}
	if _, err := h.API.GetSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: c.SandboxId, Range: hav1.MetricsRange_METRICS_RANGE_24H})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.API.GetSandboxMetrics(ctxT(t, time.Minute), connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: newID()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("metrics of an unknown capsule: %v", err)
	}
}

// checkAverages verifies that every point of a coarse tier is the mean of
// the samples in its bucket of width seconds, stamped with the bucket's
// start, and that together they cover every sample.
func checkAverages(t *testing.T, tier string, samples, avgs []*hav1.MetricPoint, width int64) {
	t.Helper()
	if len(avgs) == 0 {
		t.Fatalf("%s tier empty", tier)
	}
	covered := 0
	for _, a := range avgs {
		if a.Ts%width != 0 {
			t.Fatalf("%s point at %d, not on a %d s boundary", tier, a.Ts, width)
		}
		var n, mem uint64
		var cpu float64
		for _, s := range samples {
			if s.Ts >= a.Ts && s.Ts < a.Ts+width {
				n++
				mem += s.MemBytes
				cpu += s.CpuPct
			}
		}
		if n == 0 || a.MemBytes != mem/n || math.Abs(a.CpuPct-cpu/float64(n)) > 1e-6 {
			t.Fatalf("%s point %v is not the mean of its %d samples (mem %d, cpu %.3f)", tier, a, n, mem/max(n, 1), cpu/float64(max(n, 1)))
		}
		covered += int(n)
	}
	if covered != len(samples) {
		t.Fatalf("%s tier covers %d of %d samples", tier, covered, len(samples))
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
