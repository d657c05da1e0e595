// Package metrics is the control plane's Prometheus metrics: capsules and hosts read from PostgreSQL
// at every scrape (so every control plane of a database reports the same fleet), host capacity and
// reservations, API request latency, and the errors of calls to host agents.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/telemetry"
)

// Namespace prefixes every control plane series.
const Namespace = "wrenn_cp"

// scrapeTimeout bounds the database queries of one scrape.
const scrapeTimeout = 5 * time.Second

// Capsule and host statuses reported even when no row has them, so the series exist from the start.
var (
	liveCapsuleStatuses = []string{"pending", "starting", "running", "paused", "hibernated", "missing"}
	hostStatuses        = []string{
		store.HostPending, store.HostOnline, store.HostOffline, store.HostDraining, store.HostUnreachable,
	}
)

// Config configures Metrics.
type Config struct {
	Store   *store.Store
	Version string
	// TeamLabels adds wrenn_cp_team_capsules{team_id,state}: one series per team and live state.
	TeamLabels bool
	// WebSockets, when set, is reported as wrenn_cp_websockets.
	WebSockets *httpapi.WebSockets
}

// Metrics owns the control plane's registry.
type Metrics struct {
	// Registry holds every series; serve it with telemetry.MetricsHandler.
	Registry *prometheus.Registry
	http     *telemetry.HTTPMetrics
	calls    *agentCalls
}

// New builds the registry with the database collector, the HTTP histogram and the agent call
// counters.
func New(cfg Config) *Metrics {
	m := &Metrics{
		Registry: telemetry.NewRegistry(Namespace, cfg.Version),
		http:     telemetry.NewHTTPMetrics(Namespace),
		calls:    newAgentCalls(),
	}
	m.Registry.MustRegister(m.http.Collectors()...)
	m.Registry.MustRegister(m.calls.collectors()...)
	m.Registry.MustRegister(newDBCollector(cfg.Store, cfg.TeamLabels))
	if ws := cfg.WebSockets; ws != nil {
		m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "websockets",
			Help: "Open WebSocket connections (PTY, exec and process streams).",
		}, func() float64 { return float64(ws.Len()) }))
	}
	return m
}

// Middleware observes the API's requests in wrenn_cp_http_request_duration_seconds, labelled with the
// router's matched pattern.
func (m *Metrics) Middleware(rt *httpapi.Router) http.Handler {
	return m.http.Middleware(rt, rt.Match)
}

// dbCollector reads capsule and host counts from PostgreSQL at every scrape.
type dbCollector struct {
	store      *store.Store
	teamLabels bool

	up, capsules, teamCapsules, hosts                *prometheus.Desc
	capCPU, capMem, capDisk, resCPU, resMem, resDisk *prometheus.Desc
}

func newDBCollector(st *store.Store, teamLabels bool) *dbCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &dbCollector{
		store:        st,
		teamLabels:   teamLabels,
		up:           d("database_up", "1 when this scrape could read the database, else 0 (the fleet series are then missing)."),
		capsules:     d("capsules", "Capsules that are not stopped or errored, by state (from the database).", "state"),
		teamCapsules: d("team_capsules", "Capsules that are not stopped or errored, by team and state.", "team_id", "state"),
		hosts:        d("hosts", "Hosts by status.", "status"),
		capCPU:       d("host_capacity_cpus", "CPU cores a host reported at registration.", "host_id", "type"),
		capMem:       d("host_capacity_memory_bytes", "Memory a host reported at registration.", "host_id", "type"),
		capDisk:      d("host_capacity_disk_bytes", "Disk of the data directory a host reported at registration.", "host_id", "type"),
		resCPU:       d("host_reserved_cpus", "vCPUs reserved by the live (pending, starting, running, missing) capsules of a host.", "host_id", "type"),
		resMem:       d("host_reserved_memory_bytes", "Memory reserved by the live capsules of a host.", "host_id", "type"),
		resDisk:      d("host_reserved_disk_bytes", "Disk reserved by the capsules of a host that are not stopped (paused ones keep theirs).", "host_id", "type"),
	}
}

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.capsules, c.teamCapsules, c.hosts, c.capCPU, c.capMem, c.capDisk, c.resCPU, c.resMem, c.resDisk} {
		ch <- d
	}
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	up := 1.0
	if err := c.collect(ctx, ch); err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
}

// collect sends the fleet series; on a database error it sends nothing more.
func (c *dbCollector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	byStatus, err := c.store.CountLiveCapsulesByStatus(ctx)
	if err != nil {
		return err
	}
	hosts, err := c.store.ListHostCapacity(ctx)
	if err != nil {
		return err
	}
	var teams map[string]map[string]int32
	if c.teamLabels {
		rows, err := c.store.CountLiveCapsulesByTeamStatus(ctx)
		if err != nil {
			return err
		}
		teams = map[string]map[string]int32{}
		for _, r := range rows {
			t := ids.Team.Format(r.TeamID)
			if teams[t] == nil {
				teams[t] = map[string]int32{}
			}
			teams[t][r.Status] = r.Count
		}
	}

	counts := map[string]int32{}
	for _, s := range liveCapsuleStatuses {
		counts[s] = 0
	}
	for _, r := range byStatus {
		counts[r.Status] = r.Count
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.capsules, prometheus.GaugeValue, float64(n), s)
	}
	for team, states := range teams {
		for _, s := range liveCapsuleStatuses {
			ch <- prometheus.MustNewConstMetric(c.teamCapsules, prometheus.GaugeValue, float64(states[s]), team, s)
		}
	}

	hostCounts := map[string]int{}
	for _, s := range hostStatuses {
		hostCounts[s] = 0
	}
	const mib, gib = 1 << 20, 1 << 30
	for _, h := range hosts {
		hostCounts[h.Status]++
		id := ids.Host.Format(h.ID)
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, id, h.Type)
		}
		if h.CPUCores != nil && h.MemoryMB != nil && h.DiskGB != nil { // reported at registration
			gauge(c.capCPU, float64(*h.CPUCores))
			gauge(c.capMem, float64(*h.MemoryMB)*mib)
			gauge(c.capDisk, float64(*h.DiskGB)*gib)
		}
		gauge(c.resCPU, float64(h.VCPUsReserved))
		gauge(c.resMem, float64(h.MemoryMBReserved)*mib)
		gauge(c.resDisk, float64(h.DiskMBReserved)*mib)
	}
	for s, n := range hostCounts {
		ch <- prometheus.MustNewConstMetric(c.hosts, prometheus.GaugeValue, float64(n), s)
	}
	return nil
}
