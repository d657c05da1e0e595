package agentbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/testutil"
)

// Each Wrenn operation has a Benchmark<Agent…> and a Benchmark<RawRunsc…>
// twin; tools/benchreport pairs them. Only the operation itself is timed;
// set-up and clean-up between iterations run with the timer stopped. Every
// benchmark does one untimed round first, so page-cache and first-exec
// effects hit neither side.

// --- 1. create from an image until envd is ready ---------------------------

func BenchmarkAgentCreate(b *testing.B) {
	h := newAgentHost(b, newSetup(b))
	ctx := ctxFor(b)
	createDestroy := func(lat *latencies) {
		var info capsules.Info
		var err error
		lat.time(func() { info, err = h.create(ctx, memoryMB) })
		if err != nil {
			b.Fatalf("create: %v", err)
		}
		b.StopTimer()
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

func BenchmarkRawRunscCreate(b *testing.B) {
	h := newRawHost(b, newSetup(b))
	ctx := ctxFor(b)
	ns := h.Netns(b)
	createDestroy := func(lat *latencies) {
		c := h.Capsule(ns, memoryMB)
		var err error
		lat.time(func() { err = h.Run(ctx, c) })
		if err != nil {
			b.Fatalf("run: %v", err)
		}
		b.StopTimer()
		if err := h.Destroy(ctx, c); err != nil {
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

// --- 2. create from a snapshot template --------------------------------------

func BenchmarkAgentCreateFromTemplate(b *testing.B) {
	h := newAgentHost(b, newSetup(b))
	ctx := ctxFor(b)
	src := h.mustCreate(b, memoryMB)
	tpl := testutil.RandomName("tpl-", 8)
	if _, err := h.Snapshot(ctx, src.ID, "", tpl); err != nil {
		b.Fatalf("snapshot: %v", err)
	}
	restoreDestroy := func(lat *latencies) {
		id := h.newID()
		var err error
		lat.time(func() { _, err = h.Create(ctx, capsules.CreateParams{ID: id, TemplateID: tpl}) })
		if err != nil {
			b.Fatalf("create from template: %v", err)
		}
		b.StopTimer()
		if err := h.Destroy(ctx, id); err != nil {
			b.Fatalf("destroy: %v", err)
		}
		b.StartTimer()
	}
	restoreDestroy(new(latencies))
	var lat latencies
	for b.Loop() {
		restoreDestroy(&lat)
	}
	lat.report(b)
}

func BenchmarkRawRunscCreateFromTemplate(b *testing.B) {
	h := newRawHost(b, newSetup(b))
	ctx := ctxFor(b)
	src := h.Capsule(h.Netns(b), memoryMB)
	if err := h.Run(ctx, src); err != nil {
		b.Fatalf("run: %v", err)
	}
	image := filepath.Join(b.TempDir(), "checkpoint")
	if err := os.Mkdir(image, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := h.Checkpoint(ctx, src, image); err != nil {
		b.Fatalf("checkpoint: %v", err)
	}
	ns := h.Netns(b) // a different namespace and address
	restoreDestroy := func(lat *latencies) {
		c := h.Capsule(ns, memoryMB)
		var err error
		lat.time(func() { err = h.Restore(ctx, c, image) })
		if err != nil {
			b.Fatalf("restore: %v", err)
		}
		b.StopTimer()
		if err := h.Destroy(ctx, c); err != nil {
			b.Fatalf("destroy: %v", err)
		}
		b.StartTimer()
	}
	restoreDestroy(new(latencies))
	var lat latencies
	for b.Loop() {
		restoreDestroy(&lat)
	}
	lat.report(b)
}

// --- 3. pause and resume, with and without dirty memory ---------------------

// dirtyCases are the MiB of random data a capsule holds in tmpfs pages
// while it is paused and resumed.
var dirtyCases = []int{0, 256}

func BenchmarkAgentPause(b *testing.B)  { benchAgentPauseResume(b, true) }
func BenchmarkAgentResume(b *testing.B) { benchAgentPauseResume(b, false) }

// benchAgentPauseResume cycles a capsule through Pause and Resume, timing
// one of them.
func benchAgentPauseResume(b *testing.B, timePause bool) {
	h := newAgentHost(b, newSetup(b))
	for _, dirty := range dirtyCases {
		b.Run(fmt.Sprintf("dirty=%dMiB", dirty), func(b *testing.B) {
			ctx := ctxFor(b)
			info := h.mustCreate(b, dirtyMemoryMB)
			b.Cleanup(func() { _ = h.Destroy(context.Background(), info.ID) })
			if dirty > 0 {
				if err := shell(ctx, info.HostIP, dirtyScript(dirty)); err != nil {
					b.Fatalf("dirty memory: %v", err)
				}
			}
			pause := func() error { return h.Pause(ctx, info.ID) }
			resume := func() error {
				_, err := h.Resume(ctx, capsules.ResumeParams{ID: info.ID})
				return err
			}
			cycle(b, pause, resume, nil, timePause)
		})
	}
}

func BenchmarkRawRunscPause(b *testing.B)  { benchRawPauseResume(b, true) }
func BenchmarkRawRunscResume(b *testing.B) { benchRawPauseResume(b, false) }

// benchRawPauseResume cycles a raw container through checkpoint+delete and
// restore+health, timing one of them.
func benchRawPauseResume(b *testing.B, timePause bool) {
	h := newRawHost(b, newSetup(b))
	for _, dirty := range dirtyCases {
		b.Run(fmt.Sprintf("dirty=%dMiB", dirty), func(b *testing.B) {
			ctx := ctxFor(b)
			c := h.Capsule(h.Netns(b), dirtyMemoryMB)
			if err := h.Run(ctx, c); err != nil {
				b.Fatalf("run: %v", err)
			}
			b.Cleanup(func() { _ = h.Destroy(context.Background(), c) })
			if dirty > 0 {
				if err := shell(ctx, c.Addr(), dirtyScript(dirty)); err != nil {
					b.Fatalf("dirty memory: %v", err)
				}
			}
			image := filepath.Join(b.TempDir(), "checkpoint")
			pause := func() error {
				if err := os.Mkdir(image, 0o700); err != nil {
					return err
				}
				return h.Checkpoint(ctx, c, image)
			}
			resume := func() error { return h.Restore(ctx, c, image) }
			// The agent removes a used snapshot at the end of Resume; raw
			// does the same, untimed (left behind, its pages would be
			// written back during later checkpoints).
			tidy := func() error { return os.RemoveAll(image) }
			cycle(b, pause, resume, tidy, timePause)
		})
	}
}

// cycle runs pause, resume and tidy (if not nil) per iteration, timing
// pause or resume only.
func cycle(b *testing.B, pause, resume, tidy func() error, timePause bool) {
	b.Helper()
	step := func(name string, f func() error, timed bool, lat *latencies) {
		if !timed {
			b.StopTimer()
			defer b.StartTimer()
		}
		var err error
		if timed {
			lat.time(func() { err = f() })
		} else {
			err = f()
		}
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
	}
	round := func(lat *latencies) {
		step("pause", pause, timePause, lat)
		step("resume", resume, !timePause, lat)
		if tidy != nil {
			step("tidy", tidy, false, lat)
		}
	}
	round(new(latencies))
	var lat latencies
	for b.Loop() {
		round(&lat)
	}
	lat.report(b)
}

// --- 4. host memory of idle capsules -----------------------------------------

// reportIdleMemory samples the memory of capsules (their cgroup paths) once
// per iteration and reports the per-capsule mean.
func reportIdleMemory(b *testing.B, cgroups []string) {
	b.Helper()
	time.Sleep(settleIdleTime)
	var total hostMemory
	samples := 0
	for b.Loop() {
		for _, cg := range cgroups {
			m, err := memoryOf(cg)
			if err != nil {
				b.Fatalf("memory of %s: %v", cg, err)
			}
			total.add(m)
		}
		samples++
		time.Sleep(100 * time.Millisecond)
	}
	per := float64(samples * len(cgroups) << 20)
	b.ReportMetric(float64(total.pss)/per, "MiB/capsule")
	b.ReportMetric(float64(total.cgroup)/per, "cgroup-MiB/capsule")
}

func BenchmarkAgentIdleMemory(b *testing.B) {
	h := newAgentHost(b, newSetup(b))
	var cgroups []string
	for range idleCapsules {
		info := h.mustCreate(b, memoryMB)
		cgroups = append(cgroups, filepath.Join(h.Cgroup, info.ID))
	}
	reportIdleMemory(b, cgroups)
}

func BenchmarkRawRunscIdleMemory(b *testing.B) {
	h := newRawHost(b, newSetup(b))
	ctx := ctxFor(b)
	var cgroups []string
	for range idleCapsules {
		c := h.Capsule(h.Netns(b), memoryMB)
		if err := h.Run(ctx, c); err != nil {
			b.Fatalf("run: %v", err)
		}
		cgroups = append(cgroups, filepath.Join(h.Cgroup, c.ID))
	}
	reportIdleMemory(b, cgroups)
}

// --- 5. creates per second with concurrent callers ---------------------------

// throughput runs create+destroy in parallelCalls goroutines; one
// iteration hands each of them one job, and the jobs of consecutive
// iterations overlap. worker(i) returns caller i's operation.
func throughput(b *testing.B, worker func(i int) func() error) {
	b.Helper()
	jobs := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for i := range parallelCalls {
		op := worker(i)
		wg.Go(func() {
			for range jobs {
				if err := op(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	start := time.Now()
	n := 0
	for b.Loop() {
		for range parallelCalls {
			jobs <- struct{}{}
			n++
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	// The loop's own clock stops before the last jobs finish.
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/op")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "creates/s")
}

func BenchmarkAgentCreateParallel(b *testing.B) {
	h := newAgentHost(b, newSetup(b))
	ctx := ctxFor(b)
	// Warm up: one create per caller.
	for range parallelCalls {
		info := h.mustCreate(b, memoryMB)
		if err := h.Destroy(ctx, info.ID); err != nil {
			b.Fatal(err)
		}
	}
	throughput(b, func(int) func() error {
		return func() error {
			info, err := h.create(ctx, memoryMB)
			if err != nil {
				return fmt.Errorf("create: %w", err)
			}
			return h.Destroy(ctx, info.ID)
		}
	})
}

func BenchmarkRawRunscCreateParallel(b *testing.B) {
	h := newRawHost(b, newSetup(b))
	ctx := ctxFor(b)
	nets := make([]testutil.Netns, parallelCalls)
	for i := range nets {
		nets[i] = h.Netns(b)
		c := h.Capsule(nets[i], memoryMB)
		if err := h.Run(ctx, c); err != nil {
			b.Fatalf("run: %v", err)
		}
		if err := h.Destroy(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	throughput(b, func(i int) func() error {
		return func() error {
			c := h.Capsule(nets[i], memoryMB)
			if err := h.Run(ctx, c); err != nil {
				return fmt.Errorf("run: %w", err)
			}
			return h.Destroy(ctx, c)
		}
	})
}
