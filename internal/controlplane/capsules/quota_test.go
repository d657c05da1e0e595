package capsules_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// liveCount counts team's capsules that are not stopped or errored.
func (f *fixture) liveCount(t *testing.T, team uuid.UUID) int {
	t.Helper()
	var n int
	err := f.env.Store.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM capsules WHERE team_id = $1 AND status NOT IN ('stopped', 'error')`, team).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// usedBy inserts a pending capsule row of team (it counts against the quota; no host runs it).
func (f *fixture) usedBy(t *testing.T, team uuid.UUID, vcpus, memoryMB int32) {
	t.Helper()
	if _, err := f.env.Store.CreateCapsule(context.Background(), db.CreateCapsuleParams{
		TeamID: team, TemplateName: "minimal", VCPUs: vcpus, MemoryMB: memoryMB, DiskMB: capsules.DiskMB,
		AllowInternet: true, DefaultUser: "root", DefaultEnv: map[string]string{},
	}); err != nil {
		t.Fatal(err)
	}
}

// Each limit refuses a create that would cross it with 429 quota_exceeded naming the limit, and
// nothing is created; an admin override raises (or lifts) it; members see their quota and usage.
func TestQuotaLimitsCreate(t *testing.T) {
	f := newFixtureQuota(t, false, capsules.Quota{Capsules: 1, VCPUs: 4, MemoryMB: 2048})
	key := cptest.Key(f.alice.APIKey)
	admin := cptest.Bearer(f.admin.JWT)
	quotaPath := "/v1/admin/teams/" + f.alice.TeamID + "/quotas"

	f.usedBy(t, f.alice.Team, 1, 512)
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: running capsules 1/1",
		http.MethodPost, "/v1/capsules", key, map[string]any{"template": "minimal"})
	if n := f.liveCount(t, f.alice.Team); n != 1 {
		t.Fatalf("%d live capsules after a refused create, want 1", n)
	}
	// Another team is not limited by alice's usage (no host: past the quota, placement answers 503).
	f.wantError(t, http.StatusServiceUnavailable, "no_capacity", "", http.MethodPost, "/v1/capsules",
		cptest.Key(f.bob.APIKey), map[string]any{"template": "minimal"})

	// The admin lifts the capsule count; vCPUs and memory still hold.
	var q capsules.TeamQuota
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": 0}).JSON(t, &q)
	if q.Effective != (capsules.Quota{Capsules: 0, VCPUs: 4, MemoryMB: 2048}) || q.Usage.Capsules != 1 || q.Usage.MemoryMB != 512 ||
		q.Overrides.Capsules == nil || *q.Overrides.Capsules != 0 || q.Overrides.VCPUs != nil {
		t.Fatalf("quota after override: %+v", q)
	}
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: vCPUs 1/4, this needs 4 more",
		http.MethodPost, "/v1/capsules", key, map[string]any{"template": "minimal", "vcpus": 4})
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: memory MB 512/2048, this needs 2000 more",
		http.MethodPost, "/v1/capsules", key, map[string]any{"template": "minimal", "memory_mb": 2000})
	if n := f.liveCount(t, f.alice.Team); n != 1 {
		t.Fatalf("%d live capsules after refused creates, want 1", n)
	}
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": 0, "vcpus": 8, "memory_mb": 4096})
	f.wantError(t, http.StatusServiceUnavailable, "no_capacity", "", http.MethodPost, "/v1/capsules", key,
		map[string]any{"template": "minimal", "vcpus": 4, "memory_mb": 2000})

	// Members read it; other teams, bad input and non-admins are refused.
	f.do(t, http.StatusOK, http.MethodGet, "/v1/teams/"+f.alice.TeamID+"/quotas", cptest.Bearer(f.alice.JWT), nil).JSON(t, &q)
	if q.Effective.VCPUs != 8 || q.Effective.Capsules != 0 || q.Usage.Capsules != 1 {
		t.Fatalf("member view: %+v", q)
	}
	f.do(t, http.StatusForbidden, http.MethodGet, "/v1/teams/"+f.alice.TeamID+"/quotas", cptest.Bearer(f.bob.JWT), nil)
	f.do(t, http.StatusForbidden, http.MethodPut, quotaPath, cptest.Bearer(f.alice.JWT), map[string]any{"capsules": 5})
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodPut, quotaPath, admin, map[string]any{"capsules": -1})
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodPut, "/v1/admin/teams/nope/quotas", admin, map[string]any{})
	f.do(t, http.StatusOK, http.MethodGet, quotaPath, admin, nil).JSON(t, &q)
	if q.Effective.VCPUs != 8 {
		t.Fatalf("a refused PUT changed the quota: %+v", q)
	}
	// null goes back to the platform default.
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": nil}).JSON(t, &q)
	if q.Effective != (capsules.Quota{Capsules: 1, VCPUs: 4, MemoryMB: 2048}) {
		t.Fatalf("after reset: %+v", q)
	}
}

// Concurrent creates cannot overshoot the running-capsule quota; a resume counts as a running capsule
// and a pause needs room for the paused disk. Needs a real agent.
func TestQuotaConcurrentCreatesPauseResume(t *testing.T) {
	f := newFixtureQuota(t, true, capsules.Quota{Capsules: 2})
	key := cptest.Key(f.alice.APIKey)
	admin := cptest.Bearer(f.admin.JWT)

	const n = 4
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i] = f.env.Do(t, http.MethodPost, "/v1/capsules", key, map[string]any{"template": "minimal", "memory_mb": 128}).Status
		})
	}
	wg.Wait()
	created, refused := 0, 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusTooManyRequests:
			refused++
		}
	}
	if created != 2 || refused != n-2 {
		t.Fatalf("parallel creates answered %v; want 2 created and %d refused", statuses, n-2)
	}
	if got := f.liveCount(t, f.alice.Team); got != 2 {
		t.Fatalf("%d live capsules, want 2", got)
	}
	cs, err := f.svc.List(context.Background(), f.alice.Team)
	if err != nil || len(cs) != 2 {
		t.Fatalf("list: %v %d", err, len(cs))
	}
	a := f.svc.View(cs[0]).ID

	// Pause: no room for the paused disk → 429 and the capsule keeps running.
	f.do(t, http.StatusOK, http.MethodPut, "/v1/admin/teams/"+f.alice.TeamID+"/quotas", admin, map[string]any{"paused_disk_mb": 1})
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: paused capsules' disk MB 0/1, this needs 5120 more",
		http.MethodPost, "/v1/capsules/"+a+"/pause", key, nil)
	if st := f.status(t, a); st != store.CapsuleRunning {
		t.Fatalf("refused pause left the capsule %s", st)
	}
	f.do(t, http.StatusOK, http.MethodPut, "/v1/admin/teams/"+f.alice.TeamID+"/quotas", admin, map[string]any{})
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+a+"/pause", key, nil)

	// The paused capsule frees its place: another create fits, and then resuming a does not.
	f.create(t, key, map[string]any{"template": "minimal", "memory_mb": 128})
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: running capsules 2/2",
		http.MethodPost, "/v1/capsules/"+a+"/resume", key, nil)
	if st := f.status(t, a); st != store.CapsulePaused {
		t.Fatalf("refused resume left the capsule %s", st)
	}
	if st, ok := f.agentStatus(t, a); !ok || st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
		t.Fatalf("agent has the capsule %v (known %v) after a refused resume", st, ok)
	}
	f.do(t, http.StatusOK, http.MethodPut, "/v1/admin/teams/"+f.alice.TeamID+"/quotas", admin, map[string]any{"capsules": 3})
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+a+"/resume", key, nil)
	if st := f.status(t, a); st != store.CapsuleRunning {
		t.Fatalf("resumed capsule is %s", st)
	}

	// A snapshot of a running capsule leaves it paused: it needs room for the paused disk like a pause.
	quotaPath := "/v1/admin/teams/" + f.alice.TeamID + "/quotas"
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": 3, "paused_disk_mb": 1})
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: paused capsules' disk MB 0/1, this needs 5120 more",
		http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": a, "name": "quota-snap"})
	if st := f.status(t, a); st != store.CapsuleRunning {
		t.Fatalf("refused snapshot left the capsule %s", st)
	}
	f.wantError(t, http.StatusNotFound, "not_found", "", http.MethodDelete, "/v1/snapshots/quota-snap", key, nil)
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": 3})
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/snapshots", key, map[string]any{"capsule_id": a, "name": "quota-snap"})
	defer f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/snapshots/quota-snap", key, nil)

	// A capsule from the snapshot template counts like any create, with the template's size.
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": 2})
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: running capsules 2/2",
		http.MethodPost, "/v1/capsules", key, map[string]any{"template": "quota-snap"})
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": 3, "memory_mb": 300})
	f.wantError(t, http.StatusTooManyRequests, "quota_exceeded", "team quota exceeded: memory MB 256/300, this needs 128 more",
		http.MethodPost, "/v1/capsules", key, map[string]any{"template": "quota-snap", "memory_mb": 128 + 64})
	if got := f.liveCount(t, f.alice.Team); got != 3 {
		t.Fatalf("%d live capsules after refused creates, want 3 (2 running, 1 paused)", got)
	}
	f.do(t, http.StatusOK, http.MethodPut, quotaPath, admin, map[string]any{"capsules": 3})
	f.create(t, key, map[string]any{"template": "quota-snap"})
}
