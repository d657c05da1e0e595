package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wrenn/wrenn/internal/controlplane/daemon"
	"github.com/wrenn/wrenn/internal/telemetry"
	"github.com/wrenn/wrenn/internal/telemetry/telemetrytest"
	"github.com/wrenn/wrenn/internal/testutil"
)

// TestReadiness: /ready answers 200 while the database is reachable and 503 naming the database while
// it refuses connections (its connections terminated, new ones refused), then recovers; /health stays
// 200 throughout and /metrics keeps answering with wrenn_cp_database_up 0.
func TestReadiness(t *testing.T) {
	dsn := testutil.Postgres(t)
	s, err := daemon.New(context.Background(), daemon.Config{DatabaseURL: dsn, DashboardURL: "http://localhost:8080", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)

	ready := func() (int, telemetry.ReadyAnswer) {
		t.Helper()
		res, err := http.Get(srv.URL + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var a telemetry.ReadyAnswer
		if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
			t.Fatalf("/ready body: %v", err)
		}
		return res.StatusCode, a
	}
	health := func() int {
		t.Helper()
		res, err := http.Get(srv.URL + "/health")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if code, a := ready(); code != http.StatusOK || a.Status != "ready" || a.Checks["database"] != "ok" {
		t.Fatalf("/ready with the database up = %d %+v", code, a)
	}

	setConnections(t, dsn, false)
	t.Cleanup(func() { setConnections(t, dsn, true) })
	code, a := ready()
	if code != http.StatusServiceUnavailable || a.Status != "not ready" || a.Checks["database"] == "ok" || a.Checks["database"] == "" {
		t.Fatalf("/ready with the database down = %d %+v", code, a)
	}
	t.Logf("database check while down: %s", a.Checks["database"])
	if c := health(); c != http.StatusOK {
		t.Fatalf("/health with the database down = %d", c)
	}
	m := telemetrytest.Scrape(t, srv.URL+"/metrics", "")
	m.Want(t, telemetrytest.Eq(0), "wrenn_cp_database_up")
	if _, ok := m.Get("wrenn_cp_capsules"); ok {
		t.Errorf("capsule gauges served without a database")
	}

	setConnections(t, dsn, true)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, a := ready()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready after the database came back = %d %+v", code, a)
		}
		time.Sleep(100 * time.Millisecond)
	}
	telemetrytest.Scrape(t, srv.URL+"/metrics", "").Want(t, telemetrytest.Eq(1), "wrenn_cp_database_up")
}

// setConnections makes the database of dsn accept connections or refuse them; refusing also
// terminates the open ones.
func setConnections(t *testing.T, dsn string, allow bool) {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	name := cfg.Database
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	stmt := "ALTER DATABASE " + pgx.Identifier{name}.Sanitize() + " ALLOW_CONNECTIONS "
	if allow {
		stmt += "true"
	} else {
		stmt += "false"
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatal(err)
	}
	if !allow {
		if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMetricsToken: with a metrics token /metrics needs it; /metrics and /ready are not API routes
// (absent from the router, so not in openapi.yaml) and do not count as API requests.
func TestMetricsToken(t *testing.T) {
	s, err := daemon.New(context.Background(), daemon.Config{DatabaseURL: testutil.Postgres(t), DashboardURL: "http://localhost:8080",
		Version: "test", MetricsToken: "tok-123"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	for _, auth := range []string{"", "Bearer wrong", "tok-123"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("/metrics with Authorization %q = %d %s", auth, res.StatusCode, b)
		}
	}
	for _, p := range []string{"/health", "/v1/nothing"} {
		res, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	m := telemetrytest.Scrape(t, srv.URL+"/metrics", "tok-123")
	m.Want(t, telemetrytest.Eq(1), "wrenn_cp_http_request_duration_seconds_count", "route", "/health", "method", "GET", "status", "2xx")
	m.Want(t, telemetrytest.Eq(1), "wrenn_cp_http_request_duration_seconds_count", "route", "unmatched", "method", "GET", "status", "4xx")
	if _, ok := m.Get("wrenn_cp_http_request_duration_seconds_count", "route", "/metrics"); ok {
		t.Errorf("/metrics counted as an API request")
	}
	m.Want(t, telemetrytest.Eq(0), "wrenn_cp_websockets")
	for _, r := range s.Routes() {
		if r.Pattern == "/metrics" || r.Pattern == "/ready" {
			t.Errorf("%s %s is an API route", r.Method, r.Pattern)
		}
	}
}
