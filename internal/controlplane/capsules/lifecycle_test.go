package capsules_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestCapsuleLifecycle(t *testing.T) {
	f := newFixture(t, true)
	key, jwt := cptest.Key(f.alice.APIKey), cptest.Bearer(f.alice.JWT)

	c := f.create(t, key, map[string]any{"template": "minimal", "memory_mb": 256, "timeout_sec": 0})
	if c.ID == "" || c.SandboxID != c.ID || c.Template != "minimal" || c.VCPUs != 1 || c.MemoryMB != 256 ||
		c.HostID != ids.Host.Format(f.host.ID) || c.HostIP == "" || c.StartedAt == nil || c.LastActiveAt == nil ||
		c.CreatedAt.IsZero() || c.LastUpdated.IsZero() {
		t.Fatalf("created capsule: %+v", c)
	}
	// The metadata is what the agent reports (today its image id; docs/api.md runtime versions are the agent's).
	if len(c.Metadata) == 0 || c.Metadata["image_id"] == "" {
		t.Errorf("metadata: %v", c.Metadata)
	}
	if n := f.audits(t, "capsule.create", c.ID, "api_key"); n != 1 {
		t.Errorf("capsule.create audit entries: %d", n)
	}

	// Get and list, under both prefixes, with a key and a JWT.
	if got := f.get(t, jwt, c.ID); got.ID != c.ID || got.Status != store.CapsuleRunning {
		t.Fatalf("get: %+v", got)
	}
	var alias capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/sandboxes/"+c.ID, key, nil).JSON(t, &alias)
	if alias.ID != c.ID {
		t.Fatalf("alias get: %+v", alias)
	}
	for _, p := range []string{"/v1/capsules", "/v1/sandboxes"} {
		var list []capsules.Capsule
		f.do(t, http.StatusOK, http.MethodGet, p, key, nil).JSON(t, &list)
		if len(list) != 1 || list[0].ID != c.ID {
			t.Fatalf("list %s: %+v", p, list)
		}
	}
	var bobList []capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules", cptest.Key(f.bob.APIKey), nil).JSON(t, &bobList)
	if len(bobList) != 0 {
		t.Fatalf("bob sees %+v", bobList)
	}

	// Another team's capsule is not found, on every route.
	bob := cptest.Key(f.bob.APIKey)
	for _, r := range []struct{ method, path string }{
		{http.MethodGet, ""}, {http.MethodDelete, ""}, {http.MethodPost, "/ping"}, {http.MethodPost, "/pause"},
		{http.MethodPost, "/resume"}, {http.MethodGet, "/metrics"},
	} {
		f.wantError(t, http.StatusNotFound, "not_found", "sandbox not found", r.method, "/v1/capsules/"+c.ID+r.path, bob, nil)
		f.wantError(t, http.StatusBadRequest, "invalid_request", "invalid sandbox ID", r.method, "/v1/capsules/cl-nope"+r.path, key, nil)
	}

	// Ping: activity on the host and in the database.
	time.Sleep(20 * time.Millisecond) // the ping's time differs from the creation's
	f.do(t, http.StatusNoContent, http.MethodPost, "/v1/capsules/"+c.ID+"/ping", key, nil)
	if got := f.get(t, key, c.ID); !got.LastActiveAt.After(*c.LastActiveAt) {
		t.Errorf("ping did not move last_active_at: %v → %v", c.LastActiveAt, got.LastActiveAt)
	}

	// Live metrics (the test agent samples every 200 ms).
	var m capsules.Metrics
	eventually(t, 30*time.Second, "live metrics", func() bool {
		f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules/"+c.ID+"/metrics?range=5m", key, nil).JSON(t, &m)
		return len(m.Points) >= 2
	})
	if m.CapsuleID != c.ID || m.SandboxID != c.ID || m.Range != "5m" || m.Points[0].MemBytes <= 0 || m.Points[0].TimestampUnix <= 0 {
		t.Fatalf("metrics: %+v", m)
	}
	f.do(t, http.StatusOK, http.MethodGet, "/v1/sandboxes/"+c.ID+"/metrics", key, nil).JSON(t, &m)
	if m.Range != "10m" {
		t.Errorf("default range: %q", m.Range)
	}
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodGet, "/v1/capsules/"+c.ID+"/metrics?range=3m", key, nil)
	f.wantError(t, http.StatusConflict, "invalid_state", "sandbox is not paused (status: running)", http.MethodPost, "/v1/capsules/"+c.ID+"/resume", key, nil)

	// Pause: metrics persisted, state checks.
	var paused capsules.Capsule
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+c.ID+"/pause", jwt, nil).JSON(t, &paused)
	if paused.Status != store.CapsulePaused || paused.HostIP != "" || paused.HostID != c.HostID {
		t.Fatalf("paused: %+v", paused)
	}
	if st, ok := f.agentStatus(t, c.ID); !ok || st.String() != "SANDBOX_STATUS_PAUSED" {
		t.Fatalf("agent status after pause: %v %v", st, ok)
	}
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules/"+c.ID+"/metrics?range=10m", key, nil).JSON(t, &m)
	if len(m.Points) == 0 || m.Points[0].MemBytes <= 0 {
		t.Errorf("persisted metrics of a paused capsule: %+v", m)
	}
	for _, p := range []string{"/pause", "/ping"} {
		f.wantError(t, http.StatusConflict, "invalid_state", "sandbox is not running (status: paused)", http.MethodPost, "/v1/capsules/"+c.ID+p, key, nil)
	}

	// Resume: running with a new started_at, on the same host.
	var resumed capsules.Capsule
	f.do(t, http.StatusOK, http.MethodPost, "/v1/sandboxes/"+c.ID+"/resume", key, nil).JSON(t, &resumed)
	if resumed.Status != store.CapsuleRunning || resumed.HostIP == "" || !resumed.StartedAt.After(*c.StartedAt) {
		t.Fatalf("resumed: %+v (created %+v)", resumed, c)
	}
	if out := f.exec(t, c.ID, "echo alive"); out != "alive" {
		t.Fatalf("exec after resume: %q", out)
	}
	for _, a := range []string{"capsule.pause", "capsule.resume"} {
		if n := f.audits(t, a, c.ID, ""); n != 1 {
			t.Errorf("%s audit entries: %d", a, n)
		}
	}

	// Destroy: idempotent, then gone from the list, 404 metrics, 409 on running-only routes.
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/capsules/"+c.ID, key, nil)
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/sandboxes/"+c.ID, key, nil)
	if _, ok := f.agentStatus(t, c.ID); ok {
		t.Fatal("agent still has the destroyed capsule")
	}
	if got := f.get(t, key, c.ID); got.Status != store.CapsuleStopped || got.HostIP != "" {
		t.Fatalf("destroyed: %+v", got)
	}
	var list []capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules", key, nil).JSON(t, &list)
	if len(list) != 0 {
		t.Fatalf("list after destroy: %+v", list)
	}
	f.wantError(t, http.StatusNotFound, "not_found", "metrics not available for sandbox in state: stopped", http.MethodGet, "/v1/capsules/"+c.ID+"/metrics", key, nil)
	f.wantError(t, http.StatusConflict, "invalid_state", "sandbox is not running (status: stopped)", http.MethodPost, "/v1/capsules/"+c.ID+"/pause", key, nil)
	if n := f.audits(t, "capsule.destroy", c.ID, ""); n != 1 {
		t.Errorf("capsule.destroy audit entries: %d", n)
	}
}

func TestCreateValidation(t *testing.T) {
	f := newFixture(t, false)
	key := cptest.Key(f.alice.APIKey)
	for _, tc := range []struct {
		body any
		msg  string
	}{
		{map[string]any{"template": "minimal", "vcpus": 0}, "vcpus must be at least 1"},
		{map[string]any{"template": "minimal", "memory_mb": 127}, "memory_mb must be at least 128"},
		{map[string]any{"template": "minimal", "timeout_sec": -1}, "timeout_sec must not be negative"},
		{map[string]any{"vcpus": "two"}, ""},
		{[]byte(`{"template":`), "invalid JSON body"},
	} {
		f.wantError(t, http.StatusBadRequest, "invalid_request", tc.msg, http.MethodPost, "/v1/capsules", key, tc.body)
	}
	f.wantError(t, http.StatusNotFound, "not_found", "template not found", http.MethodPost, "/v1/capsules", key, map[string]any{"template": "nope"})
	// No host: 503 no_capacity, nothing recorded.
	f.wantError(t, http.StatusServiceUnavailable, "no_capacity", "", http.MethodPost, "/v1/capsules", key, map[string]any{"template": "minimal"})
	f.wantError(t, http.StatusServiceUnavailable, "no_capacity", "", http.MethodPost, "/v1/sandboxes", key, nil)
	var n int
	if err := f.env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM capsules`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("capsule rows after failed creates: %d %v", n, err)
	}
	// A JWT without a team: 403 no_team; no credentials: 401; admin routes need an admin.
	noTeam := cptest.Bearer(f.env.JWT(t, f.alice.User, uuid.Nil, ""))
	f.wantError(t, http.StatusForbidden, "no_team", "", http.MethodPost, "/v1/capsules", noTeam, nil)
	f.wantError(t, http.StatusUnauthorized, "unauthorized", "", http.MethodGet, "/v1/capsules", cptest.Cred{}, nil)
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodGet, "/v1/admin/capsules", cptest.Bearer(f.alice.JWT), nil)
	f.wantError(t, http.StatusUnauthorized, "unauthorized", "", http.MethodGet, "/v1/admin/templates", key, nil)
	f.wantError(t, http.StatusMethodNotAllowed, "method_not_allowed", "", http.MethodPut, "/v1/capsules", key, nil)
}

func TestCreateFailureRecordsError(t *testing.T) {
	f := newFixture(t, true)
	key := cptest.Key(f.alice.APIKey)
	// The agent rejects the size: the row is error and the agent's error is mapped (400).
	f.wantError(t, http.StatusBadRequest, "invalid_request", "", http.MethodPost, "/v1/capsules", key,
		map[string]any{"template": "minimal", "vcpus": 1000})
	var status string
	if err := f.env.Store.Pool().QueryRow(context.Background(), `SELECT status FROM capsules`).Scan(&status); err != nil || status != store.CapsuleError {
		t.Fatalf("failed capsule row: %q %v", status, err)
	}
	var list []capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules", key, nil).JSON(t, &list)
	if len(list) != 0 {
		t.Fatalf("errored capsule listed: %+v", list)
	}
	// The host is unreachable: 503, the row is error.
	f.agents.setDown(f.host.ID, true)
	f.wantError(t, http.StatusServiceUnavailable, "host_unavailable", "", http.MethodPost, "/v1/capsules", key, map[string]any{"template": "minimal"})
	f.agents.setDown(f.host.ID, false)
	var n int
	if err := f.env.Store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM capsules WHERE status = 'error'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("errored rows: %d %v", n, err)
	}
}

func TestDestroyUnreachableHost(t *testing.T) {
	f := newFixture(t, true)
	key := cptest.Key(f.alice.APIKey)
	running := f.create(t, key, map[string]any{"template": "minimal"})
	paused := f.create(t, key, map[string]any{"template": "minimal"})
	f.do(t, http.StatusOK, http.MethodPost, "/v1/capsules/"+paused.ID+"/pause", key, nil)

	f.agents.setDown(f.host.ID, true)
	// A running capsule on an unreachable host: 503 and nothing changes.
	f.wantError(t, http.StatusServiceUnavailable, "host_unavailable", "sandbox host is not reachable", http.MethodDelete, "/v1/capsules/"+running.ID, key, nil)
	if st := f.status(t, running.ID); st != store.CapsuleRunning {
		t.Fatalf("running capsule is %s after a failed destroy", st)
	}
	f.wantError(t, http.StatusServiceUnavailable, "host_unavailable", "", http.MethodPost, "/v1/capsules/"+running.ID+"/pause", key, nil)
	f.wantError(t, http.StatusServiceUnavailable, "host_unavailable", "", http.MethodPost, "/v1/capsules/"+paused.ID+"/resume", key, nil)
	// A paused one: nothing runs, so it is recorded stopped.
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/capsules/"+paused.ID, key, nil)
	if st := f.status(t, paused.ID); st != store.CapsuleStopped {
		t.Fatalf("paused capsule is %s after destroy on an unreachable host", st)
	}
	f.agents.setDown(f.host.ID, false)

	// The host is back: the reconciler destroys what the database records stopped.
	if _, ok := f.agentStatus(t, paused.ID); !ok {
		t.Fatal("agent lost the paused capsule")
	}
	if err := f.svc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.agentStatus(t, paused.ID); ok {
		t.Fatal("reconciler left the stopped capsule on its host")
	}

	// Team teardown destroys the rest.
	if err := f.svc.DestroyTeamCapsules(context.Background(), f.alice.Team); err != nil {
		t.Fatal(err)
	}
	if st := f.status(t, running.ID); st != store.CapsuleStopped {
		t.Fatalf("after team teardown: %s", st)
	}
	if _, ok := f.agentStatus(t, running.ID); ok {
		t.Fatal("team teardown left the capsule on its host")
	}
}

func TestAdminCapsules(t *testing.T) {
	f := newFixture(t, true)
	admin := cptest.Bearer(f.admin.JWT)
	var c capsules.Capsule
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/admin/capsules", admin, map[string]any{"template": "minimal"}).JSON(t, &c)
	var list []capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/admin/capsules", admin, nil).JSON(t, &list)
	if len(list) != 1 || list[0].ID != c.ID {
		t.Fatalf("admin list: %+v", list)
	}
	// The admin's own team does not see platform capsules, and vice versa.
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules", admin, nil).JSON(t, &list)
	if len(list) != 0 {
		t.Fatalf("team list shows platform capsules: %+v", list)
	}
	f.wantError(t, http.StatusNotFound, "not_found", "sandbox not found", http.MethodGet, "/v1/capsules/"+c.ID, admin, nil)
	own := f.create(t, admin, map[string]any{"template": "minimal"})
	f.wantError(t, http.StatusNotFound, "not_found", "sandbox not found", http.MethodGet, "/v1/admin/capsules/"+own.ID, admin, nil)
	f.wantError(t, http.StatusBadRequest, "invalid_request", "invalid sandbox ID", http.MethodDelete, "/v1/admin/capsules/x", admin, nil)
	f.wantError(t, http.StatusForbidden, "forbidden", "", http.MethodGet, "/v1/admin/capsules/"+c.ID, cptest.Bearer(f.alice.JWT), nil)

	var got capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/admin/capsules/"+c.ID, admin, nil).JSON(t, &got)
	if got.ID != c.ID || got.Status != store.CapsuleRunning {
		t.Fatalf("admin get: %+v", got)
	}
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/admin/capsules/"+c.ID, admin, nil)
	f.do(t, http.StatusNoContent, http.MethodDelete, "/v1/capsules/"+own.ID, admin, nil)
	f.do(t, http.StatusOK, http.MethodGet, "/v1/admin/capsules/"+c.ID, admin, nil).JSON(t, &got)
	if got.Status != store.CapsuleStopped {
		t.Fatalf("admin capsule after destroy: %+v", got)
	}
	if n := f.audits(t, "capsule.destroy", c.ID, "user"); n != 1 {
		t.Errorf("admin destroy audit entries: %d", n)
	}
	var team uuid.UUID
	if err := f.env.Store.Pool().QueryRow(context.Background(), `SELECT team_id FROM audit_logs WHERE action = 'capsule.create' AND resource_id = $1`, c.ID).Scan(&team); err != nil || team != store.PlatformTeamID {
		t.Errorf("admin capsule audit team: %v %v", team, err)
	}
	if !slices.Contains([]string{store.CapsuleStopped}, f.status(t, own.ID)) {
		t.Errorf("own capsule: %s", f.status(t, own.ID))
	}
}
