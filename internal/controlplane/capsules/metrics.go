package capsules

import (
	"context"
	"fmt"
	"math"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// metricsRange is one value of ?range= on …/metrics: how far back, from which tier.
type metricsRange struct {
	span  time.Duration
	tier  string
	agent hav1.MetricsRange
}

// DefaultMetricsRange is the range of …/metrics without ?range=.
const DefaultMetricsRange = "10m"

var metricsRanges = map[string]metricsRange{
	"5m":  {5 * time.Minute, store.MetricsTier10m, hav1.MetricsRange_METRICS_RANGE_10M},
	"10m": {10 * time.Minute, store.MetricsTier10m, hav1.MetricsRange_METRICS_RANGE_10M},
	"1h":  {time.Hour, store.MetricsTier2h, hav1.MetricsRange_METRICS_RANGE_2H},
	"2h":  {2 * time.Hour, store.MetricsTier2h, hav1.MetricsRange_METRICS_RANGE_2H},
	"6h":  {6 * time.Hour, store.MetricsTier24h, hav1.MetricsRange_METRICS_RANGE_24H},
	"12h": {12 * time.Hour, store.MetricsTier24h, hav1.MetricsRange_METRICS_RANGE_24H},
	"24h": {24 * time.Hour, store.MetricsTier24h, hav1.MetricsRange_METRICS_RANGE_24H},
}

// MetricPoint is one sample of …/metrics.
type MetricPoint struct {
	TimestampUnix int64   `json:"timestamp_unix"`
	CPUPct        float64 `json:"cpu_pct"`
	MemBytes      int64   `json:"mem_bytes"`
	DiskBytes     int64   `json:"disk_bytes"`
}

// Metrics is the body of GET …/metrics (docs/api.md); SandboxID mirrors CapsuleID.
type Metrics struct {
	CapsuleID string        `json:"capsule_id"`
	SandboxID string        `json:"sandbox_id"`
	Range     string        `json:"range"`
	Points    []MetricPoint `json:"points"`
}

// Metrics returns capsule rawID's metrics over rng ("" = 10m): live from the host while it runs, the
// tiers persisted at pause while it is paused, 404 in other states.
func (s *Service) Metrics(ctx context.Context, team uuid.UUID, rawID, rng string) (Metrics, error) {
	if _, err := ParseID(rawID); err != nil {
		return Metrics{}, err
	}
	if rng == "" {
		rng = DefaultMetricsRange
	}
	mr, ok := metricsRanges[rng]
	if !ok {
		return Metrics{}, apierr.InvalidRequestf("invalid range %q: use 5m, 10m, 1h, 2h, 6h, 12h or 24h", rng)
	}
	t, err := s.Resolve(ctx, team, rawID)
	if err != nil {
		return Metrics{}, err
	}
	out := Metrics{CapsuleID: t.PublicID, SandboxID: t.PublicID, Range: rng, Points: []MetricPoint{}}
	switch t.Capsule.Status {
	case store.CapsuleRunning:
		agent, err := s.agentOf(ctx, t.Capsule)
		if err != nil {
			return Metrics{}, err
		}
		res, err := agent.GetSandboxMetrics(ctx, connect.NewRequest(&hav1.GetSandboxMetricsRequest{SandboxId: t.PublicID, Range: mr.agent}))
		if err != nil {
			return Metrics{}, apierr.FromAgent(ctx, err)
		}
		since := time.Now().Add(-mr.span).Unix()
		for _, p := range res.Msg.GetPoints() {
			if p.GetTs() >= since {
				out.Points = append(out.Points, MetricPoint{p.GetTs(), cpuPct(p.GetCpuPct()), clampInt64(p.GetMemBytes()), clampInt64(p.GetDiskBytes())})
			}
		}
	case store.CapsulePaused:
		rows, err := s.Store.ListCapsuleMetrics(ctx, db.ListCapsuleMetricsParams{CapsuleID: t.Capsule.ID, Tier: mr.tier, Since: time.Unix(0, 0)})
		if err != nil {
			return Metrics{}, apierr.Internal(err)
		}
		// The range ends when the capsule paused (its newest point), not now.
		if n := len(rows); n > 0 {
			since := rows[n-1].TS.Add(-mr.span)
			for _, r := range rows {
				if !r.TS.Before(since) {
					out.Points = append(out.Points, MetricPoint{r.TS.Unix(), r.CPUPct, r.MemBytes, r.DiskBytes})
				}
			}
		}
	default:
		return Metrics{}, apierr.NotFound("metrics not available for sandbox in state: " + t.Capsule.Status)
	}
	return out, nil
}

// metricsRows turns one tier of an agent's points into insert parameters: one point per second (the
// newest wins; points carry Unix seconds), values clamped to what the schema accepts.
func metricsRows(capsule uuid.UUID, tier string, pts []*hav1.MetricPoint) db.InsertCapsuleMetricsParams {
	p := db.InsertCapsuleMetricsParams{CapsuleID: capsule, Tier: tier,
		TS: []time.Time{}, CPUPct: []float64{}, MemBytes: []int64{}, DiskBytes: []int64{}}
	index := map[int64]int{}
	for _, pt := range pts {
		cpu, mem, disk := cpuPct(pt.GetCpuPct()), clampInt64(pt.GetMemBytes()), clampInt64(pt.GetDiskBytes())
		if i, ok := index[pt.GetTs()]; ok {
			p.CPUPct[i], p.MemBytes[i], p.DiskBytes[i] = cpu, mem, disk
			continue
		}
		index[pt.GetTs()] = len(p.TS)
		p.TS = append(p.TS, time.Unix(pt.GetTs(), 0).UTC())
		p.CPUPct = append(p.CPUPct, cpu)
		p.MemBytes = append(p.MemBytes, mem)
		p.DiskBytes = append(p.DiskBytes, disk)
	}
	return p
}

func cpuPct(v float64) float64 {
	if math.IsNaN(v) || v < 0 {
		return 0
	}
	return min(v, 100)
}

func clampInt64(v uint64) int64 { return int64(min(v, math.MaxInt64)) }

// statsRange is one value of ?range= on /v1/capsules/stats: its span and the width of a series point.
type statsRange struct {
	span, bucket time.Duration
}

// DefaultStatsRange is the range of /v1/capsules/stats without ?range=.
const DefaultStatsRange = "1h"

var statsRanges = map[string]statsRange{
	"5m":  {5 * time.Minute, 10 * time.Second},
	"1h":  {time.Hour, time.Minute},
	"6h":  {6 * time.Hour, 5 * time.Minute},
	"24h": {24 * time.Hour, 15 * time.Minute},
	"30d": {30 * 24 * time.Hour, 6 * time.Hour},
}

// StatsRetention is how long team usage samples are kept.
const StatsRetention = 60 * 24 * time.Hour

// Stats is the body of GET /v1/capsules/stats (docs/api.md).
type Stats struct {
	Range   string       `json:"range"`
	Current StatsCurrent `json:"current"`
	Peaks   StatsPeaks   `json:"peaks"`
	Series  StatsSeries  `json:"series"`
}

// StatsCurrent is what a team's running capsules reserve now.
type StatsCurrent struct {
	RunningCount     int32 `json:"running_count"`
	VCPUsReserved    int32 `json:"vcpus_reserved"`
	MemoryMBReserved int32 `json:"memory_mb_reserved"`
}

// StatsPeaks are the maxima over the range.
type StatsPeaks struct {
	RunningCount int32 `json:"running_count"`
	VCPUs        int32 `json:"vcpus"`
	MemoryMB     int32 `json:"memory_mb"`
}

// StatsSeries is the usage over the range, one point per bucket (the bucket's peak), oldest first.
type StatsSeries struct {
	Labels   []time.Time `json:"labels"`
	Running  []int32     `json:"running"`
	VCPUs    []int32     `json:"vcpus"`
	MemoryMB []int32     `json:"memory_mb"`
}

// Stats returns team's usage over rng ("" = 1h) from the samples SampleStats records.
func (s *Service) Stats(ctx context.Context, team uuid.UUID, rng string, now time.Time) (Stats, error) {
	if rng == "" {
		rng = DefaultStatsRange
	}
	sr, ok := statsRanges[rng]
	if !ok {
		return Stats{}, apierr.InvalidRequestf("invalid range %q: use 5m, 1h, 6h, 24h or 30d", rng)
	}
	cur, err := s.Store.TeamCapsuleUsage(ctx, team)
	if err != nil {
		return Stats{}, apierr.Internal(err)
	}
	bucket := int64(sr.bucket / time.Second)
	n := int(sr.span / sr.bucket)
	end := now.Unix() / bucket * bucket
	start := end - int64(n-1)*bucket
	rows, err := s.Store.TeamStatsSeries(ctx, db.TeamStatsSeriesParams{BucketSec: int32(bucket), TeamID: team, Since: time.Unix(start, 0)})
	if err != nil {
		return Stats{}, apierr.Internal(fmt.Errorf("team stats: %w", err))
	}
	out := Stats{
		Range:   rng,
		Current: StatsCurrent{cur.RunningCount, cur.VCPUs, cur.MemoryMB},
		Peaks:   StatsPeaks{cur.RunningCount, cur.VCPUs, cur.MemoryMB},
		Series: StatsSeries{Labels: make([]time.Time, n), Running: make([]int32, n),
			VCPUs: make([]int32, n), MemoryMB: make([]int32, n)},
	}
	for i := range n {
		out.Series.Labels[i] = time.Unix(start+int64(i)*bucket, 0).UTC()
	}
	for _, r := range rows {
		i := int((r.Bucket.Unix() - start) / bucket)
		if i < 0 || i >= n {
			continue
		}
		out.Series.Running[i], out.Series.VCPUs[i], out.Series.MemoryMB[i] = r.RunningCount, r.VCPUs, r.MemoryMB
		out.Peaks.RunningCount = max(out.Peaks.RunningCount, r.RunningCount)
		out.Peaks.VCPUs = max(out.Peaks.VCPUs, r.VCPUs)
		out.Peaks.MemoryMB = max(out.Peaks.MemoryMB, r.MemoryMB)
	}
	return out, nil
}

// SampleStats records one usage sample at now for every team with running capsules. The time is
// truncated to the sampling interval, so control planes sharing a database record one sample each.
func (s *Service) SampleStats(ctx context.Context, now time.Time) error {
	ts := now.Truncate(s.statsInterval).UTC()
	if _, err := s.Store.SampleTeamStats(ctx, ts); err != nil {
		return fmt.Errorf("sample team stats: %w", err)
	}
	return nil
}

// PruneStats deletes usage samples older than StatsRetention.
func (s *Service) PruneStats(ctx context.Context, now time.Time) error {
	if _, err := s.Store.DeleteTeamStatsBefore(ctx, now.Add(-StatsRetention)); err != nil {
		return fmt.Errorf("prune team stats: %w", err)
	}
	return nil
}
