package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Warm pools as a reconciled state (docs/api.md, "Warm pools"; docs/agent.md, "Warm pools"): each
// heartbeat carries the agent's pools (stored in host_pools, replacing the host's earlier report) and
// is answered with the pools the control plane wants on that host, which the agent applies.

// Bounds of a pool report.
const (
	maxReportedPools = 256
	maxPoolSize      = 64
	maxPoolIDLen     = 128
)

// PoolShape names a warm pool the way the agent keys it (TeamID "" and the image name for the built-in
// images, else the owning team's and the template's ids) and the shape of its capsules: a create hits
// the pool only with that shape.
type PoolShape struct {
	TeamID        string `json:"team_id"`
	Template      string `json:"template"`
	VCPUs         int32  `json:"vcpus"`
	MemoryMB      int32  `json:"memory_mb"`
	DiskMB        int32  `json:"disk_mb"`
	AllowInternet bool   `json:"allow_internet"`
}

// PoolReport is one pool in the body of a heartbeat: its size, the members ready now, and the agent's
// counters of creates that took a member (hits) or found none (misses).
type PoolReport struct {
	PoolShape
	Size   int32 `json:"size"`
	Ready  int32 `json:"ready"`
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
}

// HeartbeatRequest is the optional body of POST /v1/hosts/{id}/heartbeat. Pools nil (no body, or no
// pools field: an agent that does not report) leaves the host without a report.
type HeartbeatRequest struct {
	Pools *[]PoolReport `json:"pools"`
}

// DesiredPool is a pool the control plane wants on a host; Name is the template's name (for logs).
type DesiredPool struct {
	PoolShape
	Name string `json:"name"`
	Size int32  `json:"size"`
}

// HeartbeatResponse answers a heartbeat: every pool the control plane wants on the host. An agent
// applies them (their size wins over its own -pool flag) and drains the pools named earlier and no
// longer.
type HeartbeatResponse struct {
	Pools []DesiredPool `json:"pools"`
}

// validate checks a report: bad input is a 400 and changes nothing.
func (r HeartbeatRequest) validate() error {
	if r.Pools == nil {
		return nil
	}
	ps := *r.Pools
	if len(ps) > maxReportedPools {
		return apierr.InvalidRequestf("pools: at most %d pools", maxReportedPools)
	}
	seen := make(map[[2]string]bool, len(ps))
	for i, p := range ps {
		switch {
		case p.Template == "" || len(p.Template) > maxPoolIDLen || len(p.TeamID) > maxPoolIDLen:
			return apierr.InvalidRequestf("pools[%d]: template is required (at most %d characters, as team_id)", i, maxPoolIDLen)
		case p.Size < 0 || p.Size > maxPoolSize || p.Ready < 0 || p.Ready > maxPoolSize:
			return apierr.InvalidRequestf("pools[%d]: size and ready must be 0..%d", i, maxPoolSize)
		case p.VCPUs < 0 || p.MemoryMB < 0 || p.DiskMB < 0 || p.Hits < 0 || p.Misses < 0:
			return apierr.InvalidRequestf("pools[%d]: vcpus, memory_mb, disk_mb, hits and misses must not be negative", i)
		}
		k := [2]string{p.TeamID, p.Template}
		if seen[k] {
			return apierr.InvalidRequestf("pools[%d]: template %q of team %q reported twice", i, p.Template, p.TeamID)
		}
		seen[k] = true
	}
	return nil
}

// storePoolReport replaces host id's pool report with req's (none when req has no pools).
func storePoolReport(ctx context.Context, q *db.Queries, id uuid.UUID, req HeartbeatRequest) error {
	if err := q.DeleteHostPools(ctx, id); err != nil {
		return fmt.Errorf("forget pool report: %w", err)
	}
	if err := q.SetHostPoolsReported(ctx, db.SetHostPoolsReportedParams{ID: id, Reported: req.Pools != nil}); err != nil {
		return fmt.Errorf("record pool report: %w", err)
	}
	if req.Pools == nil {
		return nil
	}
	for _, p := range *req.Pools {
		if err := q.InsertHostPool(ctx, db.InsertHostPoolParams{
			HostID: id, TeamID: p.TeamID, TemplateID: p.Template, Size: p.Size, Ready: p.Ready,
			VCPUs: p.VCPUs, MemoryMB: p.MemoryMB, DiskMB: p.DiskMB, AllowInternet: p.AllowInternet,
			Hits: p.Hits, Misses: p.Misses,
		}); err != nil {
			return fmt.Errorf("store pool report: %w", err)
		}
	}
	return nil
}

// desiredPools returns the pools the control plane wants on a host of hostType (the rule of
// ListPoolTemplatesForHost, each template's pool by Config.Pool).
func (s *Service) desiredPools(ctx context.Context, q *db.Queries, id uuid.UUID, hostType string) ([]DesiredPool, error) {
	tpls, err := q.ListPoolTemplatesForHost(ctx, db.ListPoolTemplatesForHostParams{HostID: &id, HostType: hostType})
	if err != nil {
		return nil, fmt.Errorf("list pooled templates: %w", err)
	}
	out := make([]DesiredPool, 0, len(tpls))
	for _, t := range tpls {
		out = append(out, s.poolOf(t))
	}
	return out, nil
}

// poolsFreshAfter is the oldest pool report placement and the template JSON still use: a host reports
// with every heartbeat, so a report older than HeartbeatTimeout is from a host that stopped reporting.
func (s *Service) poolsFreshAfter() time.Time { return s.now().Add(-s.heartbeatTimeout) }
