// Package quiet stops the Go runtime's periodic garbage collection while envd
// has nothing to do (docs/envd.md#idle).
//
// An idle Go program still collects garbage every two minutes (the runtime
// forces a cycle when none ran for that long). Inside gVisor every such cycle
// wakes all of envd's threads and costs the sandbox about as much CPU as the
// sandbox itself spends idling, although an idle envd allocates nothing. So
// once envd has no open connection and is the capsule's only process for a
// grace period, the keeper collects once and turns the collector off, with a
// memory limit just above what envd holds as a safety net; the next
// connection turns it back on.
package quiet

import (
	"context"
	"math"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
)

// DefaultGrace is how long envd must stay idle before the collector stops.
const DefaultGrace = 5 * time.Second

// headroom is how far above envd's memory after the last collection the
// safety limit sits while the collector is off.
const headroom = 32 << 20

// Keeper tracks envd's connections and processes and switches the collector.
type Keeper struct {
	alone func() bool // whether envd is the capsule's only process
	grace time.Duration

	mu     sync.Mutex // guards conns, asleep and gcPercent
	conns  int
	asleep bool
	// gcPercent is the collector's setting before it was turned off.
	gcPercent int

	check chan struct{} // buffered: a reason to re-evaluate idleness
}

// New returns a keeper; alone reports whether envd is the only process.
// Run must be called for it to act.
func New(alone func() bool, grace time.Duration) *Keeper {
	if grace <= 0 {
		grace = DefaultGrace
	}
	return &Keeper{alone: alone, grace: grace, check: make(chan struct{}, 1)}
}

// ConnState is an http.Server ConnState hook: a new connection wakes the
// collector at once; a closed one may let it sleep.
func (k *Keeper) ConnState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		k.mu.Lock()
		k.conns++
		k.wakeLocked()
		k.mu.Unlock()
	case http.StateClosed, http.StateHijacked:
		k.mu.Lock()
		k.conns--
		k.mu.Unlock()
		k.Poke()
	}
}

// Poke makes the keeper check again whether envd is idle (a process ended).
func (k *Keeper) Poke() {
	select {
	case k.check <- struct{}{}:
	default:
	}
}

// Asleep reports whether the collector is off.
func (k *Keeper) Asleep() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.asleep
}

// Run switches the collector off after each idle grace period until ctx
// ends, then leaves it on.
func (k *Keeper) Run(ctx context.Context) {
	defer func() {
		k.mu.Lock()
		k.wakeLocked()
		k.mu.Unlock()
	}()
	t := time.NewTimer(k.grace) // envd starts idle: the first check after a grace period
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-k.check:
			t.Reset(k.grace)
		case <-t.C:
			k.trySleep()
		}
	}
}

// trySleep turns the collector off if nothing is open and nothing else runs.
func (k *Keeper) trySleep() {
	k.mu.Lock()
	idle := k.conns == 0 && !k.asleep
	k.mu.Unlock()
	if !idle || !k.alone() {
		return
	}
	// Collect and give the freed memory back, so the capsule's memory is
	// what envd really holds while it sleeps.
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.conns != 0 || k.asleep { // a connection came while collecting
		return
	}
	debug.SetMemoryLimit(int64(ms.Sys-ms.HeapReleased) + headroom)
	k.gcPercent = debug.SetGCPercent(-1)
	k.asleep = true
}

// wakeLocked turns the collector back on if it is off. The caller holds k.mu.
func (k *Keeper) wakeLocked() {
	if !k.asleep {
		return
	}
	debug.SetGCPercent(k.gcPercent)
	debug.SetMemoryLimit(math.MaxInt64)
	k.asleep = false
}
