package agentbench

import (
	"context"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/testutil"
)

// --- warm pool and fork (docs/agent.md) ---------------------------------------

// waitPool waits until the agent's pool of the minimal image has n ready capsules.
func (h *agentHost) waitPool(b *testing.B, n int) capsules.PoolStat {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, p := range h.Pools() {
			if p.TemplateID == imageName && p.Ready >= n {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("pool not ready: %+v", h.Pools())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkAgentCreatePooled is agent.Create of the same capsule as BenchmarkAgentCreate with a
// ready warm pool of one: the create takes the pooled capsule and sends /init. The refill (a new
// boot) runs untimed between iterations.
func BenchmarkAgentCreatePooled(b *testing.B) {
	h := newAgentHost(b, newSetup(b))
	ctx := ctxFor(b)
	if err := h.SetPool(ctx, capsules.PoolSpec{TemplateID: imageName, Size: 1, VCPUs: 1, MemoryMB: memoryMB, DiskMB: 2048}); err != nil {
		b.Fatal(err)
	}
	createDestroy := func(lat *latencies) {
		b.StopTimer()
		hits := h.waitPool(b, 1).Hits
		b.StartTimer()
		var info capsules.Info
		var err error
		lat.time(func() { info, err = h.create(ctx, memoryMB) })
		if err != nil {
			b.Fatalf("create: %v", err)
		}
		b.StopTimer()
		if st := h.waitPool(b, 0); st.Hits != hits+1 {
			b.Fatalf("create did not take the pooled capsule: %+v", st)
		}
		if err := h.Destroy(ctx, info.ID); err != nil {
			b.Fatalf("destroy: %v", err)
		}
		b.StartTimer()
	}
	createDestroy(new(latencies))
	var lat latencies
	for b.Loop() {
		createDestroy(&lat)
	}
	lat.report(b)
}

const forkCopies = 4

// BenchmarkAgentFork4 is agent.Fork of a running capsule into 4 copies (checkpoint with the source
// left running, 4 restores in parallel, /init each).
func BenchmarkAgentFork4(b *testing.B) {
	h := newAgentHost(b, newSetup(b))
	ctx := ctxFor(b)
	src := h.mustCreate(b, memoryMB)
	forkDestroy := func(lat *latencies) {
		targets := make([]capsules.ForkTarget, forkCopies)
		for i := range targets {
			targets[i].ID = h.newID()
		}
		var infos []capsules.Info
		var err error
		lat.time(func() { infos, err = h.Fork(ctx, src.ID, targets) })
		if err != nil {
			b.Fatalf("fork: %v", err)
		}
		b.StopTimer()
		destroyAll(b, h, infos)
		b.StartTimer()
	}
	forkDestroy(new(latencies))
	var lat latencies
	for b.Loop() {
		forkDestroy(&lat)
	}
	lat.report(b)
}

// BenchmarkAgentCreate4FromTemplate is 4 sequential agent.Create calls from a snapshot template of
// the same kind of capsule: what a fork of 4 replaces.
func BenchmarkAgentCreate4FromTemplate(b *testing.B) {
	h := newAgentHost(b, newSetup(b))
	ctx := ctxFor(b)
	src := h.mustCreate(b, memoryMB)
	tpl := testutil.RandomName("tpl-", 8)
	if _, err := h.Snapshot(ctx, src.ID, "", tpl); err != nil {
		b.Fatalf("snapshot: %v", err)
	}
	createDestroy := func(lat *latencies) {
		infos := make([]capsules.Info, 0, forkCopies)
		var err error
		lat.time(func() {
			for range forkCopies {
				var info capsules.Info
				if info, err = h.Create(ctx, capsules.CreateParams{ID: h.newID(), TemplateID: tpl}); err != nil {
					return
				}
				infos = append(infos, info)
			}
		})
		if err != nil {
			b.Fatalf("create from template: %v", err)
		}
		b.StopTimer()
		destroyAll(b, h, infos)
		b.StartTimer()
	}
	createDestroy(new(latencies))
	var lat latencies
	for b.Loop() {
		createDestroy(&lat)
	}
	lat.report(b)
}

func destroyAll(b *testing.B, h *agentHost, infos []capsules.Info) {
	b.Helper()
	for _, in := range infos {
		if err := h.Destroy(context.Background(), in.ID); err != nil {
			b.Fatalf("destroy: %v", err)
		}
	}
}
