package agentbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/rawrunsc"
)

// --- 7. where create and restore time goes ---------------------------------
//
// BenchmarkAgentPhases times the agent's create from an image and from a
// snapshot template with its network and runtime wrapped in timers:
// network (namespace, veth, nftables), runtime (bundle, `runsc run` or
// `runsc restore`, which returns once memory is loaded) and the rest (envd
// ready, /init, records). BenchmarkRawRunscPhases splits the raw side
// finer (bundle, runsc, envd ready, /init) and tries the restore options of
// the pinned runsc, idle and with 256 MiB dirty: buffered reads against
// -direct (O_DIRECT reads), with the checkpoint in the page cache, evicted
// from it and just written; and runsc checkpoint with buffered writes
// against -direct (O_DIRECT writes), each followed by a restore.
// docs/benchmarks.md, "Where create and restore time goes", holds the
// results.

// phaseTimes collects durations by phase name.
type phaseTimes struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (p *phaseTimes) add(name string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.d == nil {
		p.d = map[string][]time.Duration{}
	}
	p.d[name] = append(p.d[name], d)
}

func (p *phaseTimes) timed(name string, f func() error) error {
	start := time.Now()
	err := f()
	p.add(name, time.Since(start))
	return err
}

// report adds each phase's median as "<phase>-ms/p50".
func (p *phaseTimes) report(b *testing.B) { p.reportAs(b, "") }

// reportAs is report with prefix before each phase's name.
func (p *phaseTimes) reportAs(b *testing.B, prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, ds := range p.d {
		s := slices.Clone(ds)
		slices.Sort(s)
		b.ReportMetric(float64(s[len(s)/2].Microseconds())/1000, prefix+name+"-ms/p50")
	}
}

func (p *phaseTimes) reset() {
	p.mu.Lock()
	p.d = nil
	p.mu.Unlock()
}

// timedNetwork times the agent's network setup.
type timedNetwork struct {
	capsules.Network
	p *phaseTimes
}

func (n timedNetwork) Setup(ctx context.Context, id string, allowInternet bool) (rn runtime.Network, ip string, err error) {
	err = n.p.timed("network", func() error {
		var e error
		rn, ip, e = n.Network.Setup(ctx, id, allowInternet)
		return e
	})
	return rn, ip, err
}

// timedRuntime times the runtime's create and restore; the other methods
// (and Flatten) pass through.
type timedRuntime struct {
	runtime.Runtime
	runtime.Flattener
	p *phaseTimes
}

func (r timedRuntime) Create(ctx context.Context, spec runtime.Spec) error {
	return r.p.timed("runtime", func() error { return r.Runtime.Create(ctx, spec) })
}

func (r timedRuntime) Restore(ctx context.Context, spec runtime.Spec, snap runtime.Snapshot) error {
	return r.p.timed("runtime", func() error { return r.Runtime.Restore(ctx, spec, snap) })
}

func BenchmarkAgentPhases(b *testing.B) {
	p := &phaseTimes{}
	h := newAgentHost(b, newSetup(b), func(c *capsules.Config) {
		c.Network = timedNetwork{Network: c.Network, p: p}
		fl, _ := c.Runtime.(runtime.Flattener)
		c.Runtime = timedRuntime{Runtime: c.Runtime, Flattener: fl, p: p}
	})
	ctx := ctxFor(b)
	src := h.mustCreate(b, memoryMB)
	tpl := testutil.RandomName("tpl-", 8)
	if _, err := h.Snapshot(ctx, src.ID, "", tpl); err != nil {
		b.Fatalf("snapshot: %v", err)
	}
	for _, c := range []struct {
		name   string
		params func(id string) capsules.CreateParams
	}{
		{"image", func(id string) capsules.CreateParams {
			return capsules.CreateParams{ID: id, VCPUs: 1, MemoryMB: memoryMB, TemplateID: imageName}
		}},
		{"template", func(id string) capsules.CreateParams { return capsules.CreateParams{ID: id, TemplateID: tpl} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			round := func() {
				id := h.newID()
				start := time.Now()
				if _, err := h.Create(ctx, c.params(id)); err != nil {
					b.Fatalf("create: %v", err)
				}
				p.add("total", time.Since(start))
				if err := h.Destroy(ctx, id); err != nil {
					b.Fatalf("destroy: %v", err)
				}
			}
			round()
			p.reset()
			for b.Loop() {
				round()
			}
			p.mu.Lock()
			for i, t := range p.d["total"] {
				if i < len(p.d["network"]) && i < len(p.d["runtime"]) {
					p.d["rest"] = append(p.d["rest"], t-p.d["network"][i]-p.d["runtime"][i])
				}
			}
			p.mu.Unlock()
			p.report(b)
			p.reset()
		})
	}
}

func BenchmarkRawRunscPhases(b *testing.B) {
	h := newRawHost(b, newSetup(b))
	ctx := ctxFor(b)
	p := &phaseTimes{}
	ns := h.Netns(b)

	b.Run("create", func(b *testing.B) {
		round := func() {
			c := h.Capsule(ns, memoryMB)
			if err := runPhased(ctx, h, c, p); err != nil {
				b.Fatalf("run: %v", err)
			}
			if err := h.Destroy(ctx, c); err != nil {
				b.Fatalf("destroy: %v", err)
			}
		}
		round()
		p.reset()
		for b.Loop() {
			round()
		}
		p.report(b)
		p.reset()
	})

	// Restore options, on an idle capsule and on one holding 256 MiB of
	// dirty tmpfs pages, from one checkpoint on disk (the benchmark's
	// temporary directory, where the agent keeps its snapshots too): the
	// default buffered reads against -direct (O_DIRECT reads of the pages
	// file, what the agent uses unless -checkpoint-direct=false), each with the
	// checkpoint's files in the page cache (warm: restored before, as a
	// template or pool snapshot is), evicted from it first (cold: a
	// snapshot written long ago, or after memory pressure) and just written
	// (fresh: a copy made right before, its pages still dirty in the cache
	// as a pause's are when the capsule resumes soon after). Every iteration
	// restores with each option in turn (the order rotating), so a machine
	// whose load drifts affects all of them alike. Earlier runs also tried
	// -background and the checkpoint on tmpfs; docs/benchmarks.md keeps
	// their results.
	type variant struct {
		name  string
		cache string // warm, cold or fresh
		flags []string
	}
	variants := []variant{
		{"default", "warm", nil},
		{"direct", "warm", []string{"-direct"}},
		{"default-cold", "cold", nil},
		{"direct-cold", "cold", []string{"-direct"}},
		{"default-fresh", "fresh", nil},
		{"direct-fresh", "fresh", []string{"-direct"}},
	}
	for _, dirty := range dirtyCases {
		b.Run(fmt.Sprintf("restore/dirty=%dMiB", dirty), func(b *testing.B) {
			src := h.Capsule(h.Netns(b), dirtyMemoryMB)
			if err := h.Run(ctx, src); err != nil {
				b.Fatalf("run: %v", err)
			}
			if dirty > 0 {
				if err := shell(ctx, src.Addr(), dirtyScript(dirty)); err != nil {
					b.Fatalf("dirty memory: %v", err)
				}
			}
			disk := filepath.Join(b.TempDir(), "checkpoint")
			if err := os.Mkdir(disk, 0o700); err != nil {
				b.Fatal(err)
			}
			if err := h.Checkpoint(ctx, src, disk); err != nil {
				b.Fatalf("checkpoint: %v", err)
			}
			per := map[string]*phaseTimes{}
			for _, v := range variants {
				per[v.name] = &phaseTimes{}
			}
			rot := 0
			round := func() {
				for i := range variants {
					v := variants[(i+rot)%len(variants)]
					img := disk
					switch v.cache {
					case "cold":
						if err := evictDir(disk); err != nil {
							b.Fatalf("evict checkpoint from the page cache: %v", err)
						}
					case "fresh":
						img = filepath.Join(b.TempDir(), "checkpoint")
						if err := os.CopyFS(img, os.DirFS(disk)); err != nil {
							b.Fatal(err)
						}
					}
					c := h.Capsule(ns, dirtyMemoryMB)
					if err := restorePhased(ctx, h, c, img, v.flags, per[v.name]); err != nil {
						b.Fatalf("restore %s: %v", v.name, err)
					}
					if err := h.Destroy(ctx, c); err != nil {
						b.Fatalf("destroy: %v", err)
					}
					if img != disk {
						if err := os.RemoveAll(img); err != nil {
							b.Fatal(err)
						}
					}
				}
				rot++
			}
			round()
			for _, p := range per {
				p.reset()
			}
			for b.Loop() {
				round()
			}
			for _, v := range variants {
				per[v.name].reportAs(b, v.name+"-")
			}
		})
	}

	// The checkpoint side: one capsule paused (runsc checkpoint, delete)
	// and resumed at once (runsc restore -direct) over and over, the
	// checkpoint written with the default buffered writes or with -direct
	// (O_DIRECT writes of the pages file, what the agent uses), in turn.
	for _, dirty := range dirtyCases {
		b.Run(fmt.Sprintf("checkpoint/dirty=%dMiB", dirty), func(b *testing.B) {
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
			variants := []struct {
				name  string
				flags []string
			}{{"default", nil}, {"direct", []string{"-direct"}}}
			per := map[string]*phaseTimes{}
			for _, v := range variants {
				per[v.name] = &phaseTimes{}
			}
			rot := 0
			round := func() {
				for i := range variants {
					v := variants[(i+rot)%len(variants)]
					if err := pauseResumePhased(ctx, h, c, b.TempDir(), v.flags, per[v.name]); err != nil {
						b.Fatalf("%s: %v", v.name, err)
					}
				}
				rot++
			}
			round()
			for _, p := range per {
				p.reset()
			}
			for b.Loop() {
				round()
			}
			for _, v := range variants {
				per[v.name].reportAs(b, v.name+"-")
			}
		})
	}
}

// pauseResumePhased checkpoints the running c into a new directory under
// dir with extra checkpoint flags, deletes its container and restores it
// with -direct, timing the checkpoint ("pause") and the restore
// ("resume"); the checkpoint is removed afterwards, untimed.
func pauseResumePhased(ctx context.Context, h *rawrunsc.Host, c rawrunsc.Capsule, dir string, flags []string, p *phaseTimes) error {
	img := filepath.Join(dir, "checkpoint")
	if err := os.Mkdir(img, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(img)
	if err := h.EnvdPost(ctx, c, "/snapshot/prepare"); err != nil {
		return err
	}
	args := append(append([]string{"checkpoint"}, flags...), "-image-path", img, c.ID)
	if err := p.timed("pause", func() error { return h.Runsc(ctx, c.ID, args...) }); err != nil {
		return err
	}
	if err := h.Runsc(ctx, c.ID, "delete", "-force", c.ID); err != nil {
		return err
	}
	if err := rawrunsc.Readdress(c.NS); err != nil {
		return err
	}
	bundle := filepath.Join(h.CapsuleDir(c.ID), "bundle")
	if err := p.timed("resume", func() error {
		return h.Detached(ctx, c.ID, "restore", "-detach", "-direct", "-image-path", img, "--bundle", bundle, c.ID)
	}); err != nil {
		return err
	}
	if err := h.WaitHealthy(ctx, c); err != nil {
		return err
	}
	return h.EnvdPost(ctx, c, "/init")
}

// evictDir drops the files of dir from the page cache (after writing back
// what is dirty, which the kernel would not drop), and only them: unlike
// /proc/sys/vm/drop_caches it leaves the rest of the machine's cache alone.
func evictDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = unix.Fdatasync(int(f.Fd()))
		if err == nil {
			err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		}
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	return nil
}

// runPhased is run with each step timed.
func runPhased(ctx context.Context, h *rawrunsc.Host, c rawrunsc.Capsule, p *phaseTimes) error {
	start := time.Now()
	defer func() { p.add("total", time.Since(start)) }()
	if err := rawrunsc.Readdress(c.NS); err != nil {
		return err
	}
	var bundle string
	if err := p.timed("bundle", func() (err error) { bundle, err = h.Bundle(c); return err }); err != nil {
		return err
	}
	if err := p.timed("runsc", func() error {
		return h.Detached(ctx, c.ID, "run", "-detach", "--bundle", bundle, c.ID)
	}); err != nil {
		return err
	}
	if err := p.timed("ready", func() error { return h.WaitHealthy(ctx, c) }); err != nil {
		return err
	}
	return p.timed("init", func() error { return h.EnvdPost(ctx, c, "/init") })
}

// restorePhased restores the checkpoint in dir into the new container c
// with extra restore flags, each step timed.
func restorePhased(ctx context.Context, h *rawrunsc.Host, c rawrunsc.Capsule, dir string, flags []string, p *phaseTimes) error {
	start := time.Now()
	defer func() { p.add("total", time.Since(start)) }()
	if err := rawrunsc.Readdress(c.NS); err != nil {
		return err
	}
	var bundle string
	if err := p.timed("bundle", func() (err error) { bundle, err = h.Bundle(c); return err }); err != nil {
		return err
	}
	args := append([]string{"restore", "-detach"}, flags...)
	args = append(args, "-image-path", dir, "--bundle", bundle, c.ID)
	if err := p.timed("runsc", func() error { return h.Detached(ctx, c.ID, args...) }); err != nil {
		return err
	}
	if err := p.timed("ready", func() error { return h.WaitHealthy(ctx, c) }); err != nil {
		return err
	}
	return p.timed("init", func() error { return h.EnvdPost(ctx, c, "/init") })
}
