package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/metrics"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/telemetry"
	"github.com/wrenn/wrenn/internal/telemetry/telemetrytest"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// plainTransports reaches the test agent's plain API for its host; other hosts are unreachable.
type plainTransports struct {
	host uuid.UUID
	addr string
}

func (p plainTransports) Transport(_ context.Context, host uuid.UUID) (string, http.RoundTripper, error) {
	if host != p.host {
		return "", nil, apierr.HostUnavailable("sandbox host is not reachable")
	}
	return "http://" + p.addr, http.DefaultTransport, nil
}

type oneHost struct{ host db.Host }

func (o oneHost) Pick(context.Context, uuid.UUID, int32, int32, ...uuid.UUID) (db.Host, error) {
	return o.host, nil
}

const token = "scrape-secret"

// TestControlPlaneMetrics drives the capsule API against a real agent and checks every series the
// control plane exposes: capsules by state (total and per team), hosts by status, host capacity and
// reservations, request latency by route, agent calls and their errors.
func TestControlPlaneMetrics(t *testing.T) {
	env := cptest.New(t)
	ag := agenthost.Start(t, agenthost.Options{})
	ctx := context.Background()
	h, err := env.Store.CreateHost(ctx, db.CreateHostParams{Type: store.HostRegular})
	if err != nil {
		t.Fatal(err)
	}
	cores, mem, disk := int32(8), int32(16384), int32(200)
	if _, err := env.Store.RegisterHost(ctx, db.RegisterHostParams{ID: h.ID, Address: ag.Addr, CPUCores: &cores, MemoryMB: &mem, DiskGB: &disk}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.MarkHostOnline(ctx, h.ID); err != nil {
		t.Fatal(err)
	}
	host, err := env.Store.GetHost(ctx, h.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.CreateHost(ctx, db.CreateHostParams{Type: store.HostRegular}); err != nil { // pending
		t.Fatal(err)
	}

	m := metrics.New(metrics.Config{Store: env.Store, Version: "test", TeamLabels: true})
	svc, err := capsules.New(capsules.Config{Store: env.Store, Agents: m.Agents(plainTransports{host.ID, ag.Addr}), Scheduler: oneHost{host}})
	if err != nil {
		t.Fatal(err)
	}
	svc.Register(env.Router)
	api := m.Middleware(env.Router)
	metricsHandler := telemetry.MetricsHandler(m.Registry, token)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if telemetry.IsProbe(r, "/metrics") {
			metricsHandler.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	env.Server = srv // env.Do calls the instrumented server

	alice := env.NewAccount(t, "alice", false)
	key := cptest.Key(alice.APIKey)
	do := func(want int, method, path string, body any) cptest.Response {
		t.Helper()
		res := env.Do(t, method, path, key, body)
		if res.Status != want {
			t.Fatalf("%s %s = %d %s; want %d", method, path, res.Status, res.Body, want)
		}
		return res
	}
	var a, b capsules.Capsule
	do(http.StatusCreated, http.MethodPost, "/v1/capsules", map[string]any{"template": "minimal", "memory_mb": 256}).JSON(t, &a)
	do(http.StatusCreated, http.MethodPost, "/v1/sandboxes", map[string]any{"template": "minimal", "memory_mb": 256}).JSON(t, &b)
	t.Cleanup(func() {
		if err := svc.DestroyTeamCapsules(context.Background(), alice.Team); err != nil {
			t.Errorf("destroy capsules: %v", err)
		}
	})
	do(http.StatusOK, http.MethodPost, "/v1/capsules/"+b.ID+"/pause", nil)
	do(http.StatusOK, http.MethodGet, "/v1/capsules/"+a.ID, nil)
	do(http.StatusNotFound, http.MethodGet, "/v1/capsules/"+ids.Capsule.Format(uuid.New()), nil)
	do(http.StatusNotFound, http.MethodGet, "/v1/no-such-route", nil)
	// Destroyed on the host behind the control plane's back: the next pause fails on the agent.
	if _, err := ag.API.DestroySandbox(ctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: a.ID})); err != nil {
		t.Fatal(err)
	}
	do(http.StatusNotFound, http.MethodPost, "/v1/capsules/"+a.ID+"/pause", nil)

	// Without the token: 401.
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/metrics without token = %d", res.StatusCode)
	}

	s := telemetrytest.Scrape(t, srv.URL+"/metrics", token)
	eq, atLeast := telemetrytest.Eq, telemetrytest.AtLeast
	hostID := ids.Host.Format(host.ID)
	s.Want(t, eq(1), "wrenn_cp_build_info", "version", "test")
	s.Want(t, eq(1), "wrenn_cp_database_up")
	s.Want(t, eq(1), "wrenn_cp_capsules", "state", "running") // a: the database does not know yet it is gone
	s.Want(t, eq(1), "wrenn_cp_capsules", "state", "paused")
	s.Want(t, eq(0), "wrenn_cp_capsules", "state", "missing")
	s.Want(t, eq(1), "wrenn_cp_team_capsules", "team_id", alice.TeamID, "state", "paused")
	s.Want(t, eq(1), "wrenn_cp_hosts", "status", "online")
	s.Want(t, eq(1), "wrenn_cp_hosts", "status", "pending")
	s.Want(t, eq(0), "wrenn_cp_hosts", "status", "unreachable")
	s.Want(t, eq(8), "wrenn_cp_host_capacity_cpus", "host_id", hostID, "type", "regular")
	s.Want(t, eq(16384<<20), "wrenn_cp_host_capacity_memory_bytes", "host_id", hostID)
	s.Want(t, eq(200<<30), "wrenn_cp_host_capacity_disk_bytes", "host_id", hostID)
	s.Want(t, eq(float64(a.VCPUs)), "wrenn_cp_host_reserved_cpus", "host_id", hostID) // the paused one reserves no CPU
	s.Want(t, eq(256<<20), "wrenn_cp_host_reserved_memory_bytes", "host_id", hostID)
	var diskMB float64
	if err := env.Store.Pool().QueryRow(ctx, `SELECT sum(disk_mb) FROM capsules WHERE team_id = $1`, alice.Team).Scan(&diskMB); err != nil {
		t.Fatal(err)
	}
	s.Want(t, eq(diskMB*(1<<20)), "wrenn_cp_host_reserved_disk_bytes", "host_id", hostID) // the paused one keeps its disk

	lat := "wrenn_cp_http_request_duration_seconds_count"
	s.Want(t, eq(1), lat, "route", "/v1/capsules", "method", "POST", "status", "2xx")
	s.Want(t, eq(1), lat, "route", "/v1/sandboxes", "method", "POST", "status", "2xx")
	s.Want(t, eq(1), lat, "route", "/v1/capsules/{id}/pause", "method", "POST", "status", "2xx")
	s.Want(t, eq(1), lat, "route", "/v1/capsules/{id}/pause", "method", "POST", "status", "4xx")
	s.Want(t, eq(1), lat, "route", "/v1/capsules/{id}", "method", "GET", "status", "2xx")
	s.Want(t, eq(1), lat, "route", "/v1/capsules/{id}", "method", "GET", "status", "4xx")
	s.Want(t, eq(1), lat, "route", "unmatched", "method", "GET", "status", "4xx")

	s.Want(t, eq(2), "wrenn_cp_agent_calls_total", "procedure", "CreateSandbox")
	s.Want(t, eq(2), "wrenn_cp_agent_calls_total", "procedure", "PauseSandbox")
	s.Want(t, eq(2), "wrenn_cp_agent_call_duration_seconds_count", "procedure", "CreateSandbox")
	s.Want(t, eq(1), "wrenn_cp_agent_call_errors_total", "procedure", "PauseSandbox", "code", "not_found")
	s.Want(t, eq(1), "wrenn_cp_agent_call_errors_total", "procedure", "FlushSandboxMetrics", "code", "not_found")
	if _, ok := s.Get("wrenn_cp_agent_call_errors_total", "procedure", "CreateSandbox"); ok {
		t.Errorf("create errors counted: %v", s["wrenn_cp_agent_call_errors_total"])
	}
	s.Want(t, atLeast(1), "go_goroutines")
	s.Want(t, atLeast(1), "process_resident_memory_bytes")

	// The reconciler records a missing capsule; the gauges follow the database.
	if err := svc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	s = telemetrytest.Scrape(t, srv.URL+"/metrics", token)
	s.Want(t, eq(0), "wrenn_cp_capsules", "state", "running")
	s.Want(t, eq(1), "wrenn_cp_capsules", "state", "paused")
	s.Want(t, atLeast(1), "wrenn_cp_agent_calls_total", "procedure", "ListSandboxes")
}
