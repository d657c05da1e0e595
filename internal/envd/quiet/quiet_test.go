package quiet

import (
	"context"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gcPercent reads the collector's setting.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func run(t *testing.T, k *Keeper) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); k.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if p := gcPercent(); p != 100 {
			t.Errorf("GC percent %d after Run returned, want 100", p)
		}
	})
}

func TestSleepsWhenIdleAndAlone(t *testing.T) {
	var alone atomic.Bool
	alone.Store(true)
	k := New(alone.Load, 10*time.Millisecond)
	run(t, k)
	eventually(t, "asleep at start", k.Asleep)
	if p := gcPercent(); p != -1 {
		t.Fatalf("asleep with GC percent %d, want -1 (off)", p)
	}
	if l := debug.SetMemoryLimit(-1); l == 1<<63-1 {
		t.Error("asleep without a memory limit")
	}

	// A connection wakes the collector at once, and it stays on while open.
	k.ConnState(nil, http.StateNew)
	if k.Asleep() || gcPercent() != 100 {
		t.Fatalf("after a new connection: asleep %v, GC percent %d", k.Asleep(), gcPercent())
	}
	if l := debug.SetMemoryLimit(-1); l != 1<<63-1 {
		t.Errorf("awake with memory limit %d", l)
	}
	k.Poke()
	time.Sleep(50 * time.Millisecond) // a negative check: a slow machine only makes it pass
	if k.Asleep() {
		t.Fatal("asleep with a connection open")
	}
	k.ConnState(nil, http.StateActive)
	k.ConnState(nil, http.StateIdle)
	k.ConnState(nil, http.StateClosed)
	eventually(t, "asleep after the connection closed", k.Asleep)

	// Another process keeps it awake; its end (Poke) lets it sleep.
	k.ConnState(nil, http.StateNew)
	alone.Store(false)
	k.ConnState(nil, http.StateHijacked)
	time.Sleep(50 * time.Millisecond)
	if k.Asleep() {
		t.Fatal("asleep while another process runs")
	}
	alone.Store(true)
	k.Poke()
	eventually(t, "asleep after the process ended", k.Asleep)
}
