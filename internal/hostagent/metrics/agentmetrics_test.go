package metrics_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/metrics"
	"github.com/wrenn/wrenn/internal/hostagent/rpc"
	"github.com/wrenn/wrenn/internal/telemetry"
	"github.com/wrenn/wrenn/internal/telemetry/telemetrytest"
)

// fakeBackend lists fixed capsules and drains its auto-paused ids like the agent; Pause fails for
// unknown ids.
type fakeBackend struct {
	rpc.Agent
	infos []capsules.Info
	auto  []string
}

func (f *fakeBackend) List(context.Context) ([]capsules.Info, []string, error) {
	auto := f.auto
	f.auto = nil
	return f.infos, auto, nil
}

func (f *fakeBackend) Pools() []capsules.PoolStat {
	return []capsules.PoolStat{{TemplateID: "base", Size: 2, Ready: 1, MemoryMB: 512, Hits: 3, Misses: 1, RefillSeconds: 1.5, Refills: 4}}
}

func (f *fakeBackend) Info(id string) (capsules.Info, error) { return capsules.Info{ID: id}, nil }

func (f *fakeBackend) Pause(_ context.Context, id string) error {
	if !slices.ContainsFunc(f.infos, func(i capsules.Info) bool { return i.ID == id }) {
		return fmt.Errorf("%w: %s", capsules.ErrNotFound, id)
	}
	return nil
}

// TestScrapeKeepsAutoPaused: a scrape lists the capsules without losing the auto-paused ids the next
// ListSandboxes must report to the control plane.
func TestScrapeKeepsAutoPaused(t *testing.T) {
	b := &fakeBackend{
		infos: []capsules.Info{
			{ID: "a", Status: capsules.StatusRunning, VCPUs: 2, MemoryMB: 512, DiskMB: 1024},
			{ID: "b", Status: capsules.StatusPaused, VCPUs: 1, MemoryMB: 256, DiskMB: 2048},
		},
		auto: []string{"b"},
	}
	a := metrics.Wrap(b)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.Collectors(a, t.TempDir())...)

	srv := httptest.NewServer(telemetry.MetricsHandler(reg, ""))
	defer srv.Close()
	m := telemetrytest.Scrape(t, srv.URL, "")
	eq := telemetrytest.Eq
	m.Want(t, eq(1), "wrenn_agent_capsules", "state", "running")
	m.Want(t, eq(1), "wrenn_agent_capsules", "state", "paused")
	m.Want(t, eq(0), "wrenn_agent_capsules", "state", "creating")
	m.Want(t, eq(0), "wrenn_agent_capsules", "state", "pausing")
	m.Want(t, eq(0), "wrenn_agent_capsules", "state", "resuming")
	m.Want(t, eq(2), "wrenn_agent_reserved_cpus")
	m.Want(t, eq(512<<20), "wrenn_agent_reserved_memory_bytes")
	m.Want(t, eq(3072<<20), "wrenn_agent_reserved_disk_bytes")
	m.Want(t, eq(2), "wrenn_agent_pool_size", "team", "", "template", "base")
	m.Want(t, eq(1), "wrenn_agent_pool_ready", "team", "", "template", "base")
	m.Want(t, eq(512<<20), "wrenn_agent_pool_reserved_memory_bytes", "team", "", "template", "base")
	m.Want(t, eq(3), "wrenn_agent_pool_hits_total", "team", "", "template", "base")
	m.Want(t, eq(1), "wrenn_agent_pool_misses_total", "team", "", "template", "base")
	m.Want(t, eq(4), "wrenn_agent_pool_refill_seconds_count", "team", "", "template", "base")
	m.Want(t, eq(1.5), "wrenn_agent_pool_refill_seconds_sum", "team", "", "template", "base")
	for _, n := range []string{"wrenn_agent_host_capacity_cpus", "wrenn_agent_host_capacity_memory_bytes", "wrenn_agent_host_capacity_disk_bytes", "wrenn_agent_host_disk_available_bytes"} {
		m.Want(t, telemetrytest.AtLeast(1), n)
	}
	_, auto, err := a.List(context.Background())
	if err != nil || !slices.Equal(auto, []string{"b"}) {
		t.Fatalf("auto-paused after a scrape: %v %v", auto, err)
	}
	if _, auto, _ := a.List(context.Background()); len(auto) != 0 {
		t.Fatalf("auto-paused reported twice: %v", auto)
	}

	if err := a.Pause(context.Background(), "zzz"); err == nil {
		t.Fatal("pause of an unknown capsule succeeded")
	}
	if err := a.Pause(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	m = telemetrytest.Scrape(t, srv.URL, "")
	m.Want(t, eq(1), "wrenn_agent_operation_errors_total", "operation", "pause", "kind", "not_found")
	m.Want(t, eq(2), "wrenn_agent_operation_duration_seconds_count", "operation", "pause")
	if n := len(m["wrenn_agent_operation_duration_seconds_count"]); n != 7 {
		t.Errorf("operation histograms: %d, want one per operation", n)
	}
}
