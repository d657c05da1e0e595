package capsules_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func (f *fixture) setStatus(t *testing.T, id, status string) {
	t.Helper()
	if _, err := f.env.Store.Pool().Exec(context.Background(), `UPDATE capsules SET status = $2 WHERE id = $1`, mustID(t, id), status); err != nil {
		t.Fatal(err)
	}
}

func mustID(t *testing.T, id string) any {
	t.Helper()
	u, err := ids.Capsule.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (f *fixture) reconcile(t *testing.T) {
	t.Helper()
	if err := f.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReconciler(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	key := cptest.Key(f.alice.APIKey)
	a := f.create(t, key, map[string]any{"template": "minimal"})
	b := f.create(t, key, map[string]any{"template": "minimal", "timeout_sec": 1})

	// Destroyed on the host behind the control plane's back → stopped.
	if _, err := f.agent.API.DestroySandbox(ctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: a.ID})); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t)
	if st := f.status(t, a.ID); st != store.CapsuleStopped {
		t.Fatalf("capsule destroyed on its host is %s", st)
	}

	// Paused by the host for inactivity → paused, with a system audit entry and its metrics.
	eventually(t, 20*time.Second, "the auto-pause to be recorded", func() bool {
		f.reconcile(t)
		return f.status(t, b.ID) == store.CapsulePaused
	})
	if n := f.audits(t, "capsule.pause", b.ID, "system"); n != 1 {
		t.Errorf("system capsule.pause entries: %d", n)
	}
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+b.ID+"/resume", key, nil)
	// The resumed capsule is running for the reconciler too (it may pause again after 1 s of quiet).
	f.reconcile(t)
	if st := f.status(t, b.ID); st != store.CapsuleRunning && st != store.CapsulePaused {
		t.Fatalf("resumed capsule is %s", st)
	}

	// Missing, then its host reports it → running again; a missing capsule the host does not know → stopped.
	c := f.create(t, key, map[string]any{"template": "minimal"})
	f.setStatus(t, c.ID, store.CapsuleMissing)
	f.reconcile(t)
	if st := f.status(t, c.ID); st != store.CapsuleRunning {
		t.Fatalf("missing capsule reported running is %s", st)
	}

	// Paused on the host but not drained here (another control plane read the id) → paused.
	if _, err := f.agent.API.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: c.ID})); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t)
	if st := f.status(t, c.ID); st != store.CapsulePaused {
		t.Fatalf("capsule paused on its host is %s", st)
	}

	// Pending rows the host does not know: left alone while young, stopped when stale.
	tpl, err := f.env.Store.ResolveTemplate(ctx, db.ResolveTemplateParams{Name: "minimal", TeamID: f.alice.Team})
	if err != nil {
		t.Fatal(err)
	}
	pending := func() db.Capsule {
		row, err := f.env.Store.CreateCapsule(ctx, db.CreateCapsuleParams{TeamID: f.alice.Team, TemplateID: &tpl.ID,
			TemplateName: tpl.Name, HostID: &f.host.ID, VCPUs: 1, MemoryMB: 512, DiskMB: 5120, AllowInternet: true, DefaultUser: "root"})
		if err != nil {
			t.Fatal(err)
		}
		return row
	}
	young, stale := pending(), pending()
	if _, err := f.env.Store.Pool().Exec(ctx, `UPDATE capsules SET created_at = now() - interval '2 minutes' WHERE id = $1`, stale.ID); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t)
	if st := f.status(t, ids.Capsule.Format(young.ID)); st != store.CapsulePending {
		t.Errorf("young pending capsule is %s", st)
	}
	if st := f.status(t, ids.Capsule.Format(stale.ID)); st != store.CapsuleStopped {
		t.Errorf("stale pending capsule is %s", st)
	}
	if _, err := f.env.Store.MarkCapsuleError(ctx, young.ID); err != nil {
		t.Fatal(err)
	}

	// An unreachable host is skipped (its capsules keep their status) and reported.
	f.agents.setDown(f.host.ID, true)
	if err := f.svc.Reconcile(ctx); err == nil {
		t.Error("Reconcile with an unreachable host did not report it")
	}
	f.agents.setDown(f.host.ID, false)
	if st := f.status(t, c.ID); st != store.CapsulePaused {
		t.Errorf("capsule on an unreachable host is %s", st)
	}
}

func TestRun(t *testing.T) {
	f := newFixture(t, true)
	svc, err := capsules.New(capsules.Config{Store: f.env.Store, Agents: f.agents, Scheduler: fakeScheduler{host: &f.host},
		ReconcileInterval: 100 * time.Millisecond, StatsInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c := f.create(t, cptest.Key(f.alice.APIKey), map[string]any{"template": "minimal"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	eventually(t, 30*time.Second, "team usage samples", func() bool {
		var n int
		_ = f.env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM team_stats_samples WHERE team_id = $1 AND running_count = 1`, f.alice.Team).Scan(&n)
		return n >= 2
	})
	if _, err := f.agent.API.DestroySandbox(context.Background(), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: c.ID})); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the reconciler to record the capsule stopped", func() bool {
		return f.status(t, c.ID) == store.CapsuleStopped
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestStats(t *testing.T) {
	f := newFixture(t, false)
	ctx := context.Background()
	key := cptest.Key(f.alice.APIKey)
	tpl, err := f.env.Store.ResolveTemplate(ctx, db.ResolveTemplateParams{Name: "minimal", TeamID: f.alice.Team})
	if err != nil {
		t.Fatal(err)
	}
	running := func(vcpus, mem int32) db.Capsule {
		c, err := f.env.Store.CreateCapsule(ctx, db.CreateCapsuleParams{TeamID: f.alice.Team, TemplateID: &tpl.ID,
			TemplateName: tpl.Name, VCPUs: vcpus, MemoryMB: mem, DiskMB: 5120, AllowInternet: true, DefaultUser: "root"})
		if err != nil {
			t.Fatal(err)
		}
		if c, err = f.env.Store.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{Status: store.CapsuleRunning, ID: c.ID, FromStatuses: []string{store.CapsulePending}}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	big, _ := running(2, 512), running(1, 256)
	now := time.Now()
	for _, at := range []time.Duration{-40 * time.Second, -30 * time.Second} {
		if err := f.svc.SampleStats(ctx, now.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.env.Store.MarkCapsuleStopped(ctx, db.MarkCapsuleStoppedParams{ID: big.ID, FromStatuses: []string{store.CapsuleRunning}}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.SampleStats(ctx, now); err != nil {
		t.Fatal(err)
	}

	var st capsules.Stats
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules/stats?range=5m", key, nil).JSON(t, &st)
	if st.Range != "5m" || st.Current != (capsules.StatsCurrent{RunningCount: 1, VCPUsReserved: 1, MemoryMBReserved: 256}) ||
		st.Peaks != (capsules.StatsPeaks{RunningCount: 2, VCPUs: 3, MemoryMB: 768}) {
		t.Fatalf("stats: %+v %+v", st.Current, st.Peaks)
	}
	s := st.Series
	if len(s.Labels) != 30 || len(s.Running) != 30 || len(s.VCPUs) != 30 || len(s.MemoryMB) != 30 {
		t.Fatalf("series lengths: %d %d %d %d", len(s.Labels), len(s.Running), len(s.VCPUs), len(s.MemoryMB))
	}
	if got := s.Running[len(s.Running)-1]; got != 1 {
		t.Errorf("newest running count %d", got)
	}
	var sum int32
	for _, v := range s.VCPUs {
		sum += v
	}
	if sum != 2*3+1 || !s.Labels[0].Before(s.Labels[1]) || s.Labels[29].After(now) {
		t.Errorf("series: %+v", s)
	}

	for rng, n := range map[string]int{"": 60, "1h": 60, "6h": 72, "24h": 96, "30d": 120} {
		f.do(t, http.StatusOK, http.MethodGet, "/v1/sandboxes/stats?range="+rng, key, nil).JSON(t, &st)
		if len(st.Series.Labels) != n || st.Peaks.RunningCount != 2 {
			t.Errorf("range %q: %d labels, peaks %+v", rng, len(st.Series.Labels), st.Peaks)
		}
	}
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodGet, "/v1/capsules/stats?range=7d", key, nil)

	// Another team: zeros.
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules/stats", cptest.Key(f.bob.APIKey), nil).JSON(t, &st)
	if st.Current != (capsules.StatsCurrent{}) || st.Peaks != (capsules.StatsPeaks{}) || len(st.Series.Running) != 60 {
		t.Fatalf("bob's stats: %+v", st)
	}

	// Retention: samples older than 60 days are pruned.
	if _, err := f.env.Store.Pool().Exec(ctx, `INSERT INTO team_stats_samples VALUES ($1, now() - interval '61 days', 1, 1, 128)`, f.alice.Team); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.PruneStats(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := f.env.Store.Pool().QueryRow(ctx, `SELECT count(*) FROM team_stats_samples`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("samples after pruning: %d %v", n, err)
	}
}
