package store_test

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

func TestTemplates(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	u := mustUser(t, s, store.UserActive)
	team := mustTeam(t, s, u.ID)
	other := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)

	snap, err := s.CreateTemplate(ctx, db.CreateTemplateParams{
		TeamID: team.ID, Name: "py-env", Type: store.TemplateSnapshot, VCPUs: ptr(int32(2)), MemoryMB: ptr(int32(1024)),
		SizeBytes: 1 << 30, DefaultUser: "wrenn-user", DefaultEnv: map[string]string{"PYTHONPATH": "/opt/x", "EMPTY": ""},
		Metadata: map[string]string{"runsc_version": "release-1"}, CreatedBy: &u.ID,
	})
	must(t, err)
	if snap.Platform || snap.DefaultEnv["PYTHONPATH"] != "/opt/x" || snap.Metadata["runsc_version"] != "release-1" {
		t.Fatalf("snapshot = %+v", snap)
	}
	// A nil env is stored as {} (never NULL).
	plain, err := s.CreateTemplate(ctx, db.CreateTemplateParams{TeamID: team.ID, Name: "plain", Type: store.TemplateBase, DefaultUser: "root"})
	must(t, err)
	if plain.DefaultEnv == nil || len(plain.DefaultEnv) != 0 || plain.Metadata == nil {
		t.Fatalf("plain = %+v", plain)
	}
	_, err = s.CreateTemplate(ctx, db.CreateTemplateParams{TeamID: team.ID, Name: "py-env", Type: store.TemplateBase, DefaultUser: "root"})
	if !store.IsUniqueViolation(err, "templates_team_id_name_key") {
		t.Fatalf("duplicate name: %v", err)
	}
	_, err = s.CreateTemplate(ctx, db.CreateTemplateParams{TeamID: other.ID, Name: "py-env", Type: store.TemplateBase, DefaultUser: "root"})
	must(t, err)

	// The team's template shadows a platform template of the same name.
	_, err = s.CreateTemplate(ctx, db.CreateTemplateParams{TeamID: store.PlatformTeamID, Name: "py-env", Type: store.TemplateBase, DefaultUser: "root"})
	must(t, err)
	res, err := s.ResolveTemplate(ctx, db.ResolveTemplateParams{TeamID: team.ID, Name: "py-env"})
	must(t, err)
	if res.ID != snap.ID {
		t.Fatalf("resolved %+v, want the team's", res)
	}
	res, err = s.ResolveTemplate(ctx, db.ResolveTemplateParams{TeamID: team.ID, Name: "base"})
	must(t, err)
	if res.ID != store.BaseTemplateID {
		t.Fatalf("resolved base = %+v", res)
	}
	_, err = s.ResolveTemplate(ctx, db.ResolveTemplateParams{TeamID: team.ID, Name: "nope"})
	wantNoRows(t, err)

	names := func(ts []db.Template) []string {
		var out []string
		for _, x := range ts {
			out = append(out, x.Name)
		}
		return out
	}
	all, err := s.ListTemplatesForTeam(ctx, db.ListTemplatesForTeamParams{TeamID: team.ID})
	must(t, err)
	if got := names(all); !slices.Equal(got, []string{"base", "minimal", "py-env", "py-env", "plain"}) || !all[0].Platform {
		t.Fatalf("list = %v", got)
	}
	snaps, err := s.ListTemplatesForTeam(ctx, db.ListTemplatesForTeamParams{TeamID: team.ID, Type: ptr(store.TemplateSnapshot)})
	must(t, err)
	if got := names(snaps); !slices.Equal(got, []string{"py-env"}) {
		t.Fatalf("snapshots = %v", got)
	}
	every, err := s.ListAllTemplates(ctx)
	must(t, err)
	if len(every) != 6 {
		t.Fatalf("all templates = %d", len(every))
	}

	byID, err := s.GetTemplateByID(ctx, snap.ID)
	must(t, err)
	if byID.Name != "py-env" || byID.TeamID != team.ID {
		t.Fatalf("by id = %+v", byID)
	}

	// Deleting a template leaves its capsules running, without the reference.
	c := mustCapsule(t, s, team.ID, nil)
	_, err = s.Pool().Exec(ctx, `UPDATE capsules SET template_id = $1 WHERE id = $2`, snap.ID, c.ID)
	must(t, err)
	users, err := s.ListCapsulesForTemplate(ctx, snap.ID)
	must(t, err)
	if len(users) != 1 {
		t.Fatalf("capsules of template = %d", len(users))
	}
	del, err := s.DeleteTemplate(ctx, db.DeleteTemplateParams{TeamID: team.ID, Name: "py-env"})
	must(t, err)
	if del.ID != snap.ID {
		t.Fatalf("deleted %+v", del)
	}
	c, err = s.GetCapsuleByID(ctx, c.ID)
	must(t, err)
	if c.TemplateID != nil || c.TemplateName != "base" {
		t.Fatalf("capsule after template delete = %+v", c)
	}
	_, err = s.DeleteTemplate(ctx, db.DeleteTemplateParams{TeamID: team.ID, Name: "py-env"})
	wantNoRows(t, err)
	ids, err := s.DeleteTemplatesByTeam(ctx, team.ID)
	must(t, err)
	if len(ids) != 1 || ids[0] != plain.ID {
		t.Fatalf("deleted by team = %v", ids)
	}
}

func TestCapsules(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	other := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	host := mustOnlineHost(t, s, 16384)

	c, err := s.CreateCapsule(ctx, db.CreateCapsuleParams{
		TeamID: team.ID, TemplateID: ptr(store.BaseTemplateID), TemplateName: "base",
		VCPUs: 2, MemoryMB: 1024, DiskMB: 5120, TimeoutSec: 300, AllowInternet: false,
		DefaultUser: "wrenn-user", DefaultEnv: map[string]string{"A": "1"},
	})
	must(t, err)
	if c.Status != store.CapsulePending || c.HostID != nil || c.StartedAt != nil || c.DefaultEnv["A"] != "1" || c.Metadata == nil {
		t.Fatalf("created = %+v", c)
	}

	_, err = s.GetCapsule(ctx, db.GetCapsuleParams{TeamID: other.ID, ID: c.ID})
	wantNoRows(t, err)
	got, err := s.GetCapsule(ctx, db.GetCapsuleParams{TeamID: team.ID, ID: c.ID})
	must(t, err)
	if got.ID != c.ID {
		t.Fatal("get by team")
	}

	placed, err := s.SetCapsuleHost(ctx, db.SetCapsuleHostParams{ID: c.ID, HostID: &host.ID})
	must(t, err)
	if placed.HostID == nil || *placed.HostID != host.ID {
		t.Fatalf("placed = %+v", placed)
	}
	ip := netip.MustParseAddr("10.11.0.2")
	run, err := s.SetCapsuleRunning(ctx, db.SetCapsuleRunningParams{
		ID: c.ID, HostID: &host.ID, HostIP: &ip, Metadata: map[string]string{"envd_version": "0.1"},
		FromStatuses: []string{store.CapsulePending},
	})
	must(t, err)
	if run.Status != store.CapsuleRunning || run.StartedAt == nil || run.LastActiveAt == nil || *run.HostIP != ip ||
		run.Metadata["envd_version"] != "0.1" || !run.UpdatedAt.After(c.UpdatedAt) {
		t.Fatalf("running = %+v", run)
	}
	_, err = s.SetCapsuleRunning(ctx, db.SetCapsuleRunningParams{ID: c.ID, HostID: &host.ID, FromStatuses: []string{store.CapsulePending}})
	wantNoRows(t, err)

	n, err := s.TouchCapsule(ctx, c.ID)
	mustRows(t, n, err, 1)

	// Wrong current state: no row.
	_, err = s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: store.CapsuleRunning, FromStatuses: []string{store.CapsulePaused}})
	wantNoRows(t, err)
	paused, err := s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: store.CapsulePaused, FromStatuses: []string{store.CapsuleRunning}})
	must(t, err)
	if paused.Status != store.CapsulePaused {
		t.Fatalf("paused = %+v", paused)
	}
	n, err = s.TouchCapsule(ctx, c.ID)
	mustRows(t, n, err, 0)
	_, err = s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: "sleeping", FromStatuses: []string{store.CapsulePaused}})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad status: %v", err)
	}
	resumed, err := s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: store.CapsuleRunning, FromStatuses: []string{store.CapsulePaused}})
	must(t, err)
	if !resumed.StartedAt.After(*run.StartedAt) {
		t.Fatalf("started_at not renewed on resume: %v then %v", run.StartedAt, resumed.StartedAt)
	}

	// A second, pending capsule on the host, and one elsewhere.
	c2 := mustCapsule(t, s, team.ID, &host.ID)
	c3 := mustCapsule(t, s, other.ID, nil)
	onHost, err := s.ListCapsulesByHost(ctx, host.ID)
	must(t, err)
	if len(onHost) != 2 {
		t.Fatalf("on host = %d", len(onHost))
	}
	usage, err := s.TeamCapsuleUsage(ctx, team.ID)
	must(t, err)
	if usage.RunningCount != 1 || usage.VCPUs != 2 || usage.MemoryMB != 1024 {
		t.Fatalf("usage = %+v", usage)
	}

	missing, err := s.MarkHostCapsulesMissing(ctx, host.ID)
	must(t, err)
	slices.SortFunc(missing, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	want := []uuid.UUID{c.ID, c2.ID}
	slices.SortFunc(want, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	if !slices.Equal(missing, want) {
		t.Fatalf("missing = %v, want %v", missing, want)
	}

	stopped, err := s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c2.ID, Status: store.CapsuleStopped, FromStatuses: []string{store.CapsuleMissing}})
	must(t, err)
	if stopped.StoppedAt == nil {
		t.Fatal("stopped_at not set")
	}
	_, err = s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c3.ID, Status: store.CapsuleError, FromStatuses: []string{store.CapsulePending}})
	must(t, err)

	list, err := s.ListCapsulesByTeam(ctx, team.ID)
	must(t, err)
	if len(list) != 1 || list[0].ID != c.ID {
		t.Fatalf("team list = %+v", list)
	}
	list, err = s.ListCapsulesByTeam(ctx, other.ID)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("errored capsule listed: %+v", list)
	}
}

func TestCapsuleStatusValues(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	c := mustCapsule(t, s, team.ID, nil)
	all := []string{store.CapsulePending, store.CapsuleStarting, store.CapsuleRunning, store.CapsulePaused,
		store.CapsuleHibernated, store.CapsuleMissing, store.CapsuleStopped, store.CapsuleError}
	for _, st := range all {
		if _, err := s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: st, FromStatuses: all}); err != nil {
			t.Errorf("status %q rejected: %v", st, err)
		}
	}
}

func TestCapsuleMetrics(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	c := mustCapsule(t, s, team.ID, nil)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	ts := []time.Time{t0, t0.Add(500 * time.Millisecond), t0.Add(time.Second)}

	n, err := s.InsertCapsuleMetrics(ctx, db.InsertCapsuleMetricsParams{
		CapsuleID: c.ID, Tier: store.MetricsTier10m, TS: ts,
		CPUPct: []float64{1.5, 50, 99.9}, MemBytes: []int64{1 << 20, 2 << 20, 3 << 20}, DiskBytes: []int64{4096, 8192, 8192},
	})
	mustRows(t, n, err, 3)
	// Re-sending a point replaces it.
	n, err = s.InsertCapsuleMetrics(ctx, db.InsertCapsuleMetricsParams{
		CapsuleID: c.ID, Tier: store.MetricsTier10m, TS: ts[2:], CPUPct: []float64{10}, MemBytes: []int64{5}, DiskBytes: []int64{6},
	})
	mustRows(t, n, err, 1)
	n, err = s.InsertCapsuleMetrics(ctx, db.InsertCapsuleMetricsParams{
		CapsuleID: c.ID, Tier: store.MetricsTier2h, TS: ts[:1], CPUPct: []float64{3}, MemBytes: []int64{3}, DiskBytes: []int64{3},
	})
	mustRows(t, n, err, 1)

	pts, err := s.ListCapsuleMetrics(ctx, db.ListCapsuleMetricsParams{CapsuleID: c.ID, Tier: store.MetricsTier10m, Since: t0.Add(time.Millisecond)})
	must(t, err)
	if len(pts) != 2 || !pts[0].TS.Equal(ts[1]) || pts[0].CPUPct != 50 || pts[1].CPUPct != 10 || pts[1].DiskBytes != 6 {
		t.Fatalf("points = %+v", pts)
	}

	_, err = s.InsertCapsuleMetrics(ctx, db.InsertCapsuleMetricsParams{
		CapsuleID: c.ID, Tier: store.MetricsTier24h, TS: ts, CPUPct: []float64{1}, MemBytes: []int64{1}, DiskBytes: []int64{1},
	})
	if !store.IsNotNullViolation(err) {
		t.Fatalf("arrays of different lengths: %v", err)
	}
	_, err = s.InsertCapsuleMetrics(ctx, db.InsertCapsuleMetricsParams{
		CapsuleID: c.ID, Tier: "1h", TS: ts[:1], CPUPct: []float64{1}, MemBytes: []int64{1}, DiskBytes: []int64{1},
	})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad tier: %v", err)
	}
	_, err = s.InsertCapsuleMetrics(ctx, db.InsertCapsuleMetricsParams{
		CapsuleID: uuid.New(), Tier: store.MetricsTier10m, TS: ts[:1], CPUPct: []float64{1}, MemBytes: []int64{1}, DiskBytes: []int64{1},
	})
	if !store.IsForeignKeyViolation(err, "") {
		t.Fatalf("missing capsule: %v", err)
	}
	n, err = s.DeleteCapsuleMetrics(ctx, c.ID)
	mustRows(t, n, err, 4)
}

func TestTeamStats(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)
	for range 2 {
		c := mustCapsule(t, s, team.ID, nil)
		_, err := s.UpdateCapsuleStatus(ctx, db.UpdateCapsuleStatusParams{ID: c.ID, Status: store.CapsuleRunning, FromStatuses: []string{store.CapsulePending}})
		must(t, err)
	}
	mustCapsule(t, s, team.ID, nil) // pending: not counted
	now := time.Now().Truncate(time.Second)
	n, err := s.SampleTeamStats(ctx, now)
	mustRows(t, n, err, 1)
	n, err = s.SampleTeamStats(ctx, now) // same instant: kept once
	mustRows(t, n, err, 0)
	rows, err := s.ListTeamStats(ctx, db.ListTeamStatsParams{TeamID: team.ID, Since: now.Add(-time.Hour)})
	must(t, err)
	if len(rows) != 1 || rows[0].RunningCount != 2 || rows[0].VCPUs != 2 || rows[0].MemoryMB != 1024 {
		t.Fatalf("stats = %+v", rows)
	}
	n, err = s.DeleteTeamStatsBefore(ctx, now.Add(time.Second))
	mustRows(t, n, err, 1)
}
