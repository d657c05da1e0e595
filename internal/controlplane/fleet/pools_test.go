package fleet_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// poolEnv is a fleet whose heartbeats answer the control plane's pools.
func poolEnv(t *testing.T) *env {
	return newEnv(t, func(c *fleet.Config) { c.Pool = capsules.DesiredPool })
}

// basePool is the report of a pool of base of the default shape.
func basePool(size, ready int) map[string]any {
	return map[string]any{"team_id": "", "template": "base", "size": size, "ready": ready,
		"vcpus": 1, "memory_mb": 512, "disk_mb": 5120, "allow_internet": true, "hits": 3, "misses": 1}
}

func (e *env) heartbeat(t *testing.T, c fleet.Credentials, body any) cptest.Response {
	t.Helper()
	return e.Do(t, "POST", hostPath(c.Host.ID, "heartbeat"), cptest.Cred{HostToken: c.Token}, body)
}

func (e *env) hostPools(t *testing.T, id string) (db.Host, []db.HostPool) {
	t.Helper()
	h, err := e.Store.GetHost(context.Background(), hostUUID(t, id))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := e.Store.ListHostPools(context.Background(), h.ID)
	if err != nil {
		t.Fatal(err)
	}
	return h, ps
}

// A heartbeat stores the agent's pool report (replacing the last one; none without a body) and is
// answered with the pools the control plane wants on the host.
func TestHeartbeatPools(t *testing.T) {
	e := poolEnv(t)
	ctx := context.Background()
	if _, err := e.Store.SetTemplatePoolSize(ctx, db.SetTemplatePoolSizeParams{TeamID: store.PlatformTeamID, Name: "base", PoolSize: 2}); err != nil {
		t.Fatal(err)
	}
	c := e.onlineHost(t, "127.0.0.1:7000")

	// An agent that does not report (no body) still gets the desired pools.
	res := e.heartbeat(t, c, nil)
	want(t, res, 200, "")
	var out fleet.HeartbeatResponse
	res.JSON(t, &out)
	wantPools := []fleet.DesiredPool{{Name: "base", Size: 2, PoolShape: fleet.PoolShape{
		Template: "base", VCPUs: capsules.DefaultVCPUs, MemoryMB: capsules.DefaultMemoryMB, DiskMB: capsules.DiskMB, AllowInternet: true}}}
	if len(out.Pools) != 1 || out.Pools[0] != wantPools[0] {
		t.Fatalf("desired pools = %+v, want %+v", out.Pools, wantPools)
	}
	if h, ps := e.hostPools(t, c.Host.ID); h.PoolsReportedAt != nil || len(ps) != 0 {
		t.Fatalf("a heartbeat without a body left a report: %v %+v", h.PoolsReportedAt, ps)
	}

	// A report is stored.
	minimal := basePool(1, 0)
	minimal["template"] = "minimal"
	want(t, e.heartbeat(t, c, map[string]any{"pools": []any{basePool(2, 1), minimal}}), 200, "")
	h, ps := e.hostPools(t, c.Host.ID)
	if h.PoolsReportedAt == nil || len(ps) != 2 || ps[0].TemplateID != "base" || ps[0].Ready != 1 || ps[0].Size != 2 ||
		ps[0].MemoryMB != 512 || ps[0].Hits != 3 || ps[1].TemplateID != "minimal" {
		t.Fatalf("stored report: %v %+v", h.PoolsReportedAt, ps)
	}
	beat := *h.LastHeartbeatAt

	// Bad reports: 400, and neither the report nor the heartbeat time changes.
	for name, body := range map[string]any{
		"not JSON":         []byte("{"),
		"pools not a list": map[string]any{"pools": 3},
		"no template":      map[string]any{"pools": []any{map[string]any{"size": 1}}},
		"size too big":     map[string]any{"pools": []any{basePool(65, 0)}},
		"negative ready":   map[string]any{"pools": []any{basePool(2, -1)}},
		"negative memory":  map[string]any{"pools": []any{func() map[string]any { p := basePool(1, 1); p["memory_mb"] = -1; return p }()}},
		"reported twice":   map[string]any{"pools": []any{basePool(1, 1), basePool(2, 2)}},
	} {
		res := e.heartbeat(t, c, body)
		if res.Status != 400 || res.ErrorCode() != "invalid_request" {
			t.Errorf("%s: got %d %s, want 400 invalid_request", name, res.Status, res.Body)
		}
	}
	h, ps = e.hostPools(t, c.Host.ID)
	if len(ps) != 2 || ps[0].Ready != 1 || !h.LastHeartbeatAt.Equal(beat) {
		t.Fatalf("a bad report changed something: %+v, heartbeat %v (was %v)", ps, h.LastHeartbeatAt, beat)
	}

	// The next report replaces it; an empty one is a report of no pools; no body forgets it.
	want(t, e.heartbeat(t, c, map[string]any{"pools": []any{}}), 200, "")
	if h, ps := e.hostPools(t, c.Host.ID); h.PoolsReportedAt == nil || len(ps) != 0 {
		t.Fatalf("empty report: %v %+v", h.PoolsReportedAt, ps)
	}
	want(t, e.heartbeat(t, c, map[string]any{"pools": []any{basePool(2, 2)}}), 200, "")
	want(t, e.heartbeat(t, c, nil), 200, "")
	if h, ps := e.hostPools(t, c.Host.ID); h.PoolsReportedAt != nil || len(ps) != 0 {
		t.Fatalf("a heartbeat without a body kept the report: %v %+v", h.PoolsReportedAt, ps)
	}

	// A BYOC host is not asked to pool the platform images.
	b := e.byocTeam(t, "byoc")
	bh := e.createHost(t, b.owner.JWT, map[string]any{"type": "byoc"})
	bc := e.register(t, bh.RegistrationToken, "127.0.0.2:7000")
	e.markOnline(t, bc.Host.ID)
	res = e.heartbeat(t, bc, nil)
	want(t, res, 200, "")
	out = fleet.HeartbeatResponse{}
	res.JSON(t, &out)
	if out.Pools == nil || len(out.Pools) != 0 {
		t.Fatalf("BYOC host's desired pools = %+v, want []", out.Pools)
	}

	// Deleting the host deletes its report.
	want(t, e.heartbeat(t, c, map[string]any{"pools": []any{basePool(2, 2)}}), 200, "")
	if _, err := e.Store.DeleteHost(ctx, hostUUID(t, c.Host.ID)); err != nil {
		t.Fatal(err)
	}
	if ps, err := e.Store.ListHostPools(ctx, hostUUID(t, c.Host.ID)); err != nil || len(ps) != 0 {
		t.Fatalf("report of a deleted host: %+v, %v", ps, err)
	}
}

// Placement reserves the memory of reported pools and prefers, among hosts that fit, one with a
// ready member of the create's pool.
func TestPickPooled(t *testing.T) {
	e := poolEnv(t)
	ctx := context.Background()
	team := e.NewAccount(t, "plain", false)
	xc, yc := e.onlineHost(t, "127.0.0.1:7000"), e.onlineHost(t, "127.0.0.2:7000") // 8192 MB, 4 CPUs each
	x, y := hostUUID(t, xc.Host.ID), hostUUID(t, yc.Host.ID)
	creds := map[uuid.UUID]fleet.Credentials{x: xc, y: yc}
	// x is the emptier host.
	e.addCapsule(t, team.Team, y, store.CapsuleRunning, 1024)
	base := fleet.PoolShape{Template: "base", VCPUs: 1, MemoryMB: 512, DiskMB: 5120, AllowInternet: true}
	pick := func(pool *fleet.PoolShape, mem int32) uuid.UUID {
		t.Helper()
		var (
			h   db.Host
			err error
		)
		if pool == nil {
			h, err = e.svc.Pick(ctx, team.Team, mem, 1024)
		} else {
			h, err = e.svc.PickPooled(ctx, team.Team, *pool, mem, 1024)
		}
		if err != nil {
			t.Fatalf("pick: %v", err)
		}
		return h.ID
	}
	if got := pick(&base, 512); got != x {
		t.Fatal("without reports: not the emptier host")
	}
	// y reports a ready member of base: a create of base's shape goes there, others still to x.
	want(t, e.heartbeat(t, creds[y], map[string]any{"pools": []any{basePool(2, 1)}}), 200, "")
	want(t, e.heartbeat(t, creds[x], map[string]any{"pools": []any{}}), 200, "")
	if got := pick(&base, 512); got != y {
		t.Fatal("the host with a ready pool member was not preferred")
	}
	if got := pick(nil, 512); got != x {
		t.Fatal("a create without a pool went to the fuller host")
	}
	other := base
	other.MemoryMB = 1024
	if got := pick(&other, 1024); got != x {
		t.Fatal("a pool of another shape was preferred")
	}
	minimal := base
	minimal.Template = "minimal"
	if got := pick(&minimal, 512); got != x {
		t.Fatal("a pool of another template was preferred")
	}
	// A member that is not ready does not attract.
	want(t, e.heartbeat(t, creds[y], map[string]any{"pools": []any{basePool(2, 0)}}), 200, "")
	if got := pick(&base, 512); got != x {
		t.Fatal("a pool without ready members was preferred")
	}
	// Nor does a stale report.
	want(t, e.heartbeat(t, creds[y], map[string]any{"pools": []any{basePool(2, 2)}}), 200, "")
	if got := pick(&base, 512); got != y {
		t.Fatal("the host with a ready pool member was not preferred")
	}
	if _, err := e.Store.Pool().Exec(ctx, `UPDATE hosts SET pools_reported_at = now() - interval '1 hour' WHERE id = $1`, y); err != nil {
		t.Fatal(err)
	}
	if got := pick(&base, 512); got != x {
		t.Fatal("a stale report was used")
	}
	// The preferred host must still fit: y has 8192 - 1024 - 2×512 (its pool) MB left.
	want(t, e.heartbeat(t, creds[y], map[string]any{"pools": []any{basePool(2, 2)}}), 200, "")
	if got := pick(&base, 6144); got != y {
		t.Fatal("the host with a ready member and room was not preferred")
	}
	if got := pick(&base, 6400); got != x {
		t.Fatal("a host without room for the capsule (its reported pool counted) was chosen")
	}
	// A reported pool reserves its memory even when the control plane asks for none (an agent's
	// -pool flag): x reports 8 × 512 MB and now has less room than y.
	big := basePool(8, 0)
	big["template"] = "minimal"
	want(t, e.heartbeat(t, creds[x], map[string]any{"pools": []any{big}}), 200, "")
	if got := pick(nil, 512); got != y {
		t.Fatal("the reported pool's memory was not reserved")
	}
	// x: 8192 - 8×512 = 4096 MB left; y: 8192 - 1024 - 2×512 = 6144 MB left.
	if got := pick(nil, 4097); got != y {
		t.Fatal("the reported pool's memory was not reserved")
	}
	if _, err := e.svc.PickHost(ctx, x, team.Team, 4097, 1024); err == nil {
		t.Fatal("PickHost ignored the reported pool's memory")
	}
}
