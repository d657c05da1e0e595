package cp_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/images"
	"github.com/wrenn/wrenn/internal/telemetry/telemetrytest"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
	"github.com/wrenn/wrenn/internal/testutil/rawrunsc"
)

// warmTemplate is the template of the warm start benchmarks: the Debian base image, built by
// debootstrap on the benchmark's agent at the first create.
const warmTemplate = "base"

// BenchmarkWarmStart measures issue 15's warm start through the REST API of a control plane and one
// agent (docs/benchmarks.md, "Warm pool and fork through the API"): creates from `base` with a ready warm pool of one,
// creates without a pool, a raw `runsc restore` of a checkpoint of a `base` capsule of the same shape,
// and a pause + resume of the pooled capsule; then a fork into 4 against 4 sequential creates from a
// snapshot template of the same capsule. tools/benchreport pairs the metrics.
func BenchmarkWarmStart(b *testing.B) {
	// The control plane reconciles once an hour: nothing but the benchmark acts on capsules.
	p := platform.New(b, 1, "--reconcile-interval", "1h")
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(b))
	p.AgentArgs = []string{"-metrics-listen", metricsAddr}
	n := p.AddHost(b, false)
	w := &warm{b: b, p: p, key: cptest.Key(p.Key), metrics: "http://" + metricsAddr + "/metrics"}
	b.Cleanup(w.cleanup)

	// The first create from base builds the Debian image on the agent (minutes).
	w.destroy(b, w.create(b, warmTemplate).ID)

	b.Run("Create", func(b *testing.B) {
		raw := newRawRestore(b, n)
		var pooled, unpooled, pooledExec, unpooledExec, rawRestore, pause, resume latencies
		sides := []func(){
			func() { // pooled create → first exec, then pause and resume of that capsule
				w.setPool(b, 1)
				hits := w.poolHits(b)
				c := w.timedCreateExec(b, &pooled, &pooledExec)
				if got := w.poolHits(b); got != hits+1 {
					b.Fatalf("the create did not take the pooled capsule: pool hits %v → %v", hits, got)
				}
				w.setPool(b, 1) // the refill's boot ends before anything else is timed
				pause.time(func() { cpCall(b, p, w.key, "/v1/capsules/"+c+"/pause", 200) })
				resume.time(func() { cpCall(b, p, w.key, "/v1/capsules/"+c+"/resume", 200) })
				w.destroy(b, c)
			},
			func() { // today's create → first exec: no pool
				w.setPool(b, 0)
				c := w.timedCreateExec(b, &unpooled, &unpooledExec)
				w.destroy(b, c)
			},
			func() { // the runtime alone: runsc restore + /health + /init
				w.setPool(b, 0)
				raw.run(b, &rawRestore)
			},
		}
		// Each iteration starts with another side, so load drift and what a side leaves behind (a
		// destroy finishing) hit all three alike. ns/op is a whole iteration, set-up included: only
		// the p50 metrics measure the operations.
		for i := 0; b.Loop(); i++ {
			for j := range sides {
				sides[(i+j)%len(sides)]()
			}
		}
		w.setPool(b, 0)
		b.ReportMetric(pooled.p50(), "pooled-ms/p50")
		b.ReportMetric(unpooled.p50(), "unpooled-ms/p50")
		b.ReportMetric(rawRestore.p50(), "raw-restore-ms/p50")
		b.ReportMetric(pause.p50(), "pause-ms/p50")
		b.ReportMetric(resume.p50(), "resume-ms/p50")
		b.ReportMetric(pooledExec.p50(), "pooled-exec-ms/p50")
		b.ReportMetric(unpooledExec.p50(), "unpooled-exec-ms/p50")
		b.ReportMetric(ratio(pooled.p50(), resume.p50()), "pooled/resume")
		b.ReportMetric(ratio(pooledExec.p50(), unpooledExec.p50()), "pooled-exec/unpooled-exec")
	})

	b.Run("Fork4", func(b *testing.B) {
		w.setPool(b, 0)
		src := w.create(b, warmTemplate).ID
		defer w.destroy(b, src)
		// The snapshot pauses the source; it is resumed for the forks.
		tpl := testutil.RandomName("bench-fork-", 6)
		if res := cptest.Call(b, p.URL(), "POST", "/v1/snapshots", w.key, map[string]any{"capsule_id": src, "name": tpl}); res.Status != 201 {
			b.Fatalf("snapshot: %d %s", res.Status, res.Body)
		}
		defer func() {
			if res := cptest.Call(b, p.URL(), "DELETE", "/v1/snapshots/"+tpl, w.key, nil); res.Status != 204 {
				b.Errorf("delete template %s: %d %s", tpl, res.Status, res.Body)
			}
		}()
		cpCall(b, p, w.key, "/v1/capsules/"+src+"/resume", 200)
		var fork, creates latencies
		for i := 0; b.Loop(); i++ {
			var ids []string
			forkSide := func() {
				fork.time(func() {
					res := cptest.Call(b, p.URL(), "POST", "/v1/capsules/"+src+"/fork", w.key, map[string]int{"count": forkCopies})
					if res.Status != 201 {
						b.Fatalf("fork: %d %s", res.Status, res.Body)
					}
					var cs []platform.Capsule
					res.JSON(b, &cs)
					if len(cs) != forkCopies {
						b.Fatalf("fork answered %d capsules: %s", len(cs), res.Body)
					}
					for _, c := range cs {
						ids = append(ids, c.ID)
					}
				})
			}
			createSide := func() {
				creates.time(func() {
					for range forkCopies {
						ids = append(ids, w.create(b, tpl).ID)
					}
				})
			}
			alternate(i, func() { forkSide(); w.destroyAll(b, &ids) }, func() { createSide(); w.destroyAll(b, &ids) })
		}
		b.ReportMetric(fork.p50(), "fork-ms/p50")
		b.ReportMetric(creates.p50(), "create4-ms/p50")
	})

	// The benchmark itself leaves nothing behind: no live capsule in the API, nothing of a capsule
	// or pool member on the host (before the clean-ups' destroys and the agent's Terminate).
	if live := w.live(b); len(live) > 0 {
		b.Errorf("capsules left by the benchmark: %v", live)
	}
	platform.Eventually(b, 60*time.Second, "nothing left on the host", func() error {
		if left := n.Agent.Leftovers(); len(left) > 0 {
			return fmt.Errorf("%v", left)
		}
		return nil
	})
}

// forkCopies is the fork's count and the number of sequential creates it is compared with.
const forkCopies = 4

// warm is the benchmark's API client: capsules through the control plane, the warm pool of
// warmTemplate through the admin API, the pool's state from the agent's Prometheus metrics.
type warm struct {
	b       *testing.B
	p       *platform.Platform
	key     cptest.Cred
	metrics string
}

// create makes a capsule of template's default shape (the warm pool's) through the API.
func (w *warm) create(b *testing.B, template string) platform.Capsule {
	b.Helper()
	res := cptest.Call(b, w.p.URL(), "POST", "/v1/capsules", w.key, map[string]any{"template": template})
	if res.Status != 201 {
		b.Fatalf("create from %s: %d %s", template, res.Status, res.Body)
	}
	var c platform.Capsule
	res.JSON(b, &c)
	if c.Status != "running" {
		b.Fatalf("created capsule %+v", c)
	}
	return c
}

// timedCreateExec creates a capsule from warmTemplate and runs `echo x` in it through the API,
// recording the create in create and create → exec result in createExec; it returns the capsule.
func (w *warm) timedCreateExec(b *testing.B, create, createExec *latencies) string {
	b.Helper()
	start := time.Now()
	c := w.create(b, warmTemplate)
	created := time.Since(start)
	execEcho(b, w.p.URL(), w.key, c.ID, "x")
	*createExec = append(*createExec, time.Since(start))
	*create = append(*create, created)
	return c.ID
}

func (w *warm) destroy(b *testing.B, id string) {
	b.Helper()
	if res := cptest.Call(b, w.p.URL(), "DELETE", "/v1/capsules/"+id, w.key, nil); res.Status != 204 {
		b.Fatalf("destroy %s: %d %s", id, res.Status, res.Body)
	}
}

// destroyAll destroys the capsules in ids and empties ids.
func (w *warm) destroyAll(b *testing.B, ids *[]string) {
	for _, id := range *ids {
		w.destroy(b, id)
	}
	*ids = nil
}

// setPool sets warmTemplate's pool size through the API and waits until the agent has exactly that
// many capsules ready (0: the pool is gone, its members destroyed).
func (w *warm) setPool(b *testing.B, size int) {
	b.Helper()
	res := cptest.Call(b, w.p.URL(), "PUT", "/v1/admin/templates/"+warmTemplate+"/pool", cptest.Bearer(w.p.Admin), map[string]int{"size": size})
	if res.Status != 200 {
		b.Fatalf("set pool: %d %s", res.Status, res.Body)
	}
	platform.Eventually(b, 5*time.Minute, fmt.Sprintf("pool of %s with %d ready", warmTemplate, size), func() error {
		ready, ok := telemetrytest.Scrape(b, w.metrics, "").Get("wrenn_agent_pool_ready", "team", "", "template", warmTemplate)
		if (size == 0 && ok) || (size > 0 && ready != float64(size)) {
			return fmt.Errorf("ready %v (pool present: %v)", ready, ok)
		}
		return nil
	})
}

// poolHits is how many creates warmTemplate's pool has served since it was set up.
func (w *warm) poolHits(b *testing.B) float64 {
	b.Helper()
	hits, ok := telemetrytest.Scrape(b, w.metrics, "").Get("wrenn_agent_pool_hits_total", "team", "", "template", warmTemplate)
	if !ok {
		b.Fatalf("no pool of %s on the agent", warmTemplate)
	}
	return hits
}

// cleanup switches the pool off and destroys every capsule a failed run left.
func (w *warm) cleanup() {
	b := w.b
	if res := cptest.Call(b, w.p.URL(), "PUT", "/v1/admin/templates/"+warmTemplate+"/pool", cptest.Bearer(w.p.Admin), map[string]int{"size": 0}); res.Status != 200 {
		b.Errorf("pool off: %d %s", res.Status, res.Body)
	}
	for _, id := range w.live(b) {
		if res := cptest.Call(b, w.p.URL(), "DELETE", "/v1/capsules/"+id, w.key, nil); res.Status != 204 {
			b.Errorf("destroy leftover capsule %s: %d %s", id, res.Status, res.Body)
		}
	}
}

// live lists the team's capsules that are not stopped.
func (w *warm) live(b testing.TB) []string {
	b.Helper()
	res := cptest.Call(b, w.p.URL(), "GET", "/v1/capsules", w.key, nil)
	if res.Status != 200 {
		b.Errorf("list capsules: %d %s", res.Status, res.Body)
		return nil
	}
	var cs []platform.Capsule
	res.JSON(b, &cs)
	var ids []string
	for _, c := range cs {
		if c.Status != "stopped" {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// rawRestore restores, with runsc alone, a checkpoint of a capsule booted from the agent's `base`
// image with the warm pool's shape (1 vCPU, 512 MB, the same disk), into new containers in a
// namespace made beforehand, as tests/agentbench's raw baseline does.
type rawRestore struct {
	h          *rawrunsc.Host
	ns         testutil.Netns
	checkpoint string
}

func newRawRestore(b *testing.B, n *platform.Node) *rawRestore {
	b.Helper()
	store := &images.Store{Dir: filepath.Join(n.Agent.DataDir, "images"), Log: slog.New(slog.DiscardHandler)}
	img, err := store.Built(warmTemplate)
	if err != nil {
		b.Fatalf("the agent's %s image: %v", warmTemplate, err)
	}
	h := rawrunsc.New(b, rawrunsc.Config{Runsc: testutil.Runsc(b), Envd: n.Agent.Envd(), Image: img.Path,
		ImageName: warmTemplate, DiskMB: capsules.DiskMB})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src := h.Capsule(h.Netns(b), capsules.DefaultMemoryMB)
	if err := h.Run(ctx, src); err != nil {
		b.Fatalf("raw run: %v", err)
	}
	r := &rawRestore{h: h, ns: h.Netns(b), checkpoint: filepath.Join(b.TempDir(), "checkpoint")}
	if err := os.Mkdir(r.checkpoint, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := h.Checkpoint(ctx, src, r.checkpoint); err != nil {
		b.Fatalf("raw checkpoint: %v", err)
	}
	if err := h.Destroy(ctx, src); err != nil {
		b.Fatalf("raw destroy: %v", err)
	}
	return r
}

// run restores one container, timed into lat, and destroys it.
func (r *rawRestore) run(b *testing.B, lat *latencies) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := r.h.Capsule(r.ns, capsules.DefaultMemoryMB)
	var err error
	lat.time(func() { err = r.h.Restore(ctx, c, r.checkpoint) })
	if err != nil {
		b.Fatalf("raw restore: %v", err)
	}
	if err := r.h.Destroy(ctx, c); err != nil {
		b.Fatalf("raw destroy: %v", err)
	}
}

// ratio is a/b, 0 without b.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
