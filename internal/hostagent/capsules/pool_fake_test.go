package capsules

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func poolHost(t *testing.T, mod func(*Config)) *fakeHost {
	return newFakeHost(t, func(c *Config) {
		c.PoolCheck = 20 * time.Millisecond
		c.MemInfo = func() (int64, int64, error) { return 1 << 20, 1 << 20, nil }
		if mod != nil {
			mod(c)
		}
	})
}

func (h *fakeHost) poolStat(template string) PoolStat {
	for _, s := range h.a.Pools() {
		if s.TemplateID == template {
			return s
		}
	}
	return PoolStat{}
}

func (h *fakeHost) members() []string {
	var out []string
	for _, id := range h.rt.IDs() {
		if strings.HasPrefix(id, "wp-") {
			out = append(out, id)
		}
	}
	return out
}

func TestPoolHandsOutAndRefills(t *testing.T) {
	h := poolHost(t, func(c *Config) {
		c.Pools = []PoolSpec{{TemplateID: "base", Size: 2, AllowInternet: true}}
	})
	eventually(t, "pool ready", func() bool { return h.poolStat("base").Ready == 2 })
	before := h.members()
	for _, id := range before {
		if n := len(h.net.Inits(id)); n != 0 {
			t.Fatalf("pool member %s got %d /init before hand-out", id, n)
		}
	}
	info, err := h.a.Create(context.Background(), CreateParams{ID: "cl-pooled", TeamID: "team1", AllowInternet: true,
		DefaultEnv: map[string]string{"A": "1"}, EnvdAccessToken: "tok-1"})
	if err != nil {
		t.Fatal(err)
	}
	rec := h.record("cl-pooled")
	if !slices.Contains(before, rec.RuntimeID) || info.Status != StatusRunning || info.MemoryMB != PoolDefaultMemoryMB {
		t.Fatalf("create did not take a pool member: runtime id %q (members %v), info %+v", rec.RuntimeID, before, info)
	}
	inits := h.net.Inits(rec.RuntimeID)
	if len(inits) != 1 || inits[0].AccessToken == nil || *inits[0].AccessToken != "tok-1" || inits[0].EnvVars["A"] != "1" {
		t.Fatalf("hand-out /init = %+v", inits)
	}
	var meta metadata
	if err := readJSON(h.a.dirs.metaDir("cl-pooled")+"/metadata.json", &meta); err != nil || meta.SandboxID != "cl-pooled" {
		t.Fatalf("metadata after hand-out = %+v, %v", meta, err)
	}
	if exists(h.a.dirs.poolMember(rec.RuntimeID)) {
		t.Fatal("member directory still in the pool")
	}
	eventually(t, "pool refilled", func() bool { return h.poolStat("base").Ready == 2 })
	if st := h.poolStat("base"); st.Hits != 1 || st.Misses != 0 || st.Refills < 3 {
		t.Fatalf("stats %+v", st)
	}
	// The capsule lives on like any other: pause, resume, destroy under its runtime id.
	h.pause("cl-pooled")
	h.resume("cl-pooled")
	if err := h.a.Destroy(context.Background(), "cl-pooled"); err != nil {
		t.Fatal(err)
	}
	if h.rt.State(rec.RuntimeID) != "" || slices.Contains(h.net.IDs(), rec.RuntimeID) || exists(h.a.dirs.capsule("cl-pooled")) {
		t.Fatal("destroyed pooled capsule left something behind")
	}
}

func TestPoolMissFallsBack(t *testing.T) {
	h := poolHost(t, func(c *Config) {
		c.Pools = []PoolSpec{{TemplateID: "base", Size: 1, AllowInternet: true}}
	})
	eventually(t, "pool ready", func() bool { return h.poolStat("base").Ready == 1 })
	// Another shape: not from the pool.
	if _, err := h.a.Create(context.Background(), CreateParams{ID: "cl-big", MemoryMB: 1024, AllowInternet: true}); err != nil {
		t.Fatal(err)
	}
	if r := h.record("cl-big"); r.RuntimeID != "" {
		t.Fatalf("a create of another shape took pool member %s", r.RuntimeID)
	}
	if st := h.poolStat("base"); st.Misses != 1 || st.Hits != 0 || st.Ready != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Empty pool: today's path.
	if err := h.a.SetPool(context.Background(), PoolSpec{TemplateID: "base", Size: 0}); err != nil {
		t.Fatal(err)
	}
	if m := h.members(); len(m) != 0 {
		t.Fatalf("members left after size 0: %v", m)
	}
	h.create("cl-plain")
	if r := h.record("cl-plain"); r.RuntimeID != "" {
		t.Fatalf("runtime id %q without a pool", r.RuntimeID)
	}
}

func TestPoolReplacesUnhealthyAndDrains(t *testing.T) {
	var pressure atomic.Bool
	h := poolHost(t, func(c *Config) {
		c.Pools = []PoolSpec{{TemplateID: "base", Size: 1}}
		c.MemInfo = func() (int64, int64, error) {
			if pressure.Load() {
				return 10, 1000, nil
			}
			return 1 << 20, 1 << 20, nil
		}
	})
	eventually(t, "pool ready", func() bool { return h.poolStat("base").Ready == 1 })
	first := h.members()[0]
	h.net.Wedge(first, true)
	eventually(t, "unhealthy member replaced", func() bool {
		m := h.members()
		return len(m) == 1 && m[0] != first && h.poolStat("base").Ready == 1
	})
	if slices.Contains(h.net.IDs(), first) || exists(h.a.dirs.poolMember(first)) {
		t.Fatal("replaced member left its network or directory")
	}
	// Memory pressure gives members back and stops refills.
	pressure.Store(true)
	eventually(t, "member released under memory pressure", func() bool { return len(h.members()) == 0 })
	h.a.Close()
	if len(h.net.IDs()) != 0 {
		t.Fatalf("networks left after close: %v", h.net.IDs())
	}
}

func TestPoolDrainsOnTemplateDelete(t *testing.T) {
	h := poolHost(t, nil)
	h.create("cl-src")
	if _, err := h.a.Snapshot(context.Background(), "cl-src", "team1", "tpl1"); err != nil {
		t.Fatal(err)
	}
	if err := h.a.SetPool(context.Background(), PoolSpec{TeamID: "team1", TemplateID: "tpl1", Size: 2}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pool ready", func() bool { return h.poolStat("tpl1").Ready == 2 })
	for _, m := range h.members() {
		if h.rt.RestoredFrom(m) == "" {
			t.Fatalf("member %s not restored from the template", m)
		}
	}
	if err := h.a.DeleteTemplate(context.Background(), "team1", "tpl1"); err != nil {
		t.Fatal(err)
	}
	if m := h.members(); len(m) != 0 || len(h.a.Pools()) != 0 {
		t.Fatalf("pool not drained: members %v, pools %+v", m, h.a.Pools())
	}
	h.restart(nil)
	if st := h.a.Pools(); len(st) != 0 {
		t.Fatalf("pool of a deleted template back after restart: %+v", st)
	}
}

func TestSetPoolRejectsBadInput(t *testing.T) {
	h := poolHost(t, nil)
	for _, s := range []PoolSpec{{TemplateID: "base", Size: -1}, {TemplateID: "base", Size: MaxPoolSize + 1}, {TemplateID: "../x", Size: 1}} {
		if err := h.a.SetPool(context.Background(), s); !errors.Is(err, ErrInvalid) {
			t.Errorf("SetPool(%+v) = %v, want invalid", s, err)
		}
	}
	if len(h.a.Pools()) != 0 {
		t.Fatal("a rejected SetPool made a pool")
	}
	if _, err := os.Stat(h.a.dirs.pool()); err == nil {
		if ents, _ := os.ReadDir(h.a.dirs.pool()); len(ents) != 0 {
			t.Fatal("pool directory not empty")
		}
	}
}

// The control plane's pools win for the templates it names; the -pool flag sizes the others, and a
// template no longer named goes back to the flag's size or is drained (also after a restart).
func TestReconcilePools(t *testing.T) {
	h := poolHost(t, func(c *Config) {
		c.Pools = []PoolSpec{{TemplateID: "base", Size: 1, AllowInternet: true}}
	})
	ctx := context.Background()
	sizes := func(want map[string]int) {
		t.Helper()
		got := map[string]int{}
		for _, s := range h.a.Pools() {
			got[s.TemplateID] = s.Size
		}
		if len(got) != len(want) {
			t.Fatalf("pools %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("pools %v, want %v", got, want)
			}
		}
	}
	spec := func(tpl string, size int) PoolSpec { return PoolSpec{TemplateID: tpl, Size: size, AllowInternet: true} }
	reconcile := func(specs ...PoolSpec) {
		t.Helper()
		if err := h.a.ReconcilePools(ctx, specs); err != nil {
			t.Fatal(err)
		}
	}
	sizes(map[string]int{"base": 1})
	reconcile(spec("base", 3), spec("minimal", 2))
	sizes(map[string]int{"base": 3, "minimal": 2})
	eventually(t, "pools filled", func() bool { return h.poolStat("base").Ready == 3 && h.poolStat("minimal").Ready == 2 })
	reconcile(spec("minimal", 1))
	sizes(map[string]int{"base": 1, "minimal": 1})
	reconcile()
	sizes(map[string]int{"base": 1})
	eventually(t, "pools drained", func() bool { return len(h.members()) == 1 })

	// The push of PUT /v1/admin/templates/{name}/pool: size 0 gives the template back to the flag.
	if err := h.a.SetNamedPool(ctx, spec("base", 2)); err != nil {
		t.Fatal(err)
	}
	sizes(map[string]int{"base": 2})
	if err := h.a.SetNamedPool(ctx, spec("base", 0)); err != nil {
		t.Fatal(err)
	}
	sizes(map[string]int{"base": 1})
	if err := h.a.SetNamedPool(ctx, spec("minimal", 2)); err != nil {
		t.Fatal(err)
	}
	sizes(map[string]int{"base": 1, "minimal": 2})

	// After a restart the recorded pools run on as the control plane's until its first answer.
	h.restart(nil)
	sizes(map[string]int{"base": 1, "minimal": 2})
	reconcile()
	sizes(map[string]int{"base": 1})
	eventually(t, "pools drained", func() bool { return h.poolStat("base").Ready == 1 && len(h.members()) == 1 })

	// Bad input of one pool does not stop the others.
	if err := h.a.ReconcilePools(ctx, []PoolSpec{spec("minimal", 2), spec("bad/name", 1), spec("minimal", 3)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad pools: %v", err)
	}
	sizes(map[string]int{"base": 1, "minimal": 2})
}
