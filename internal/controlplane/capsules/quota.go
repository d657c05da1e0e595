package capsules

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Quota is a team's limits (docs/security.md, "Quotas"); 0 is unlimited. Capsules, VCPUs and MemoryMB
// count live capsules (pending, running or missing), PausedDiskMB the disk of paused ones.
type Quota struct {
	Capsules     int32 `json:"capsules"`
	VCPUs        int32 `json:"vcpus"`
	MemoryMB     int32 `json:"memory_mb"`
	PausedDiskMB int32 `json:"paused_disk_mb"`
}

// QuotaOverrides are an admin's per-team limits; nil takes the platform default (docs/api.md).
type QuotaOverrides struct {
	Capsules     *int32 `json:"capsules"`
	VCPUs        *int32 `json:"vcpus"`
	MemoryMB     *int32 `json:"memory_mb"`
	PausedDiskMB *int32 `json:"paused_disk_mb"`
}

// Validate refuses negative limits.
func (o QuotaOverrides) Validate() error {
	for _, v := range []*int32{o.Capsules, o.VCPUs, o.MemoryMB, o.PausedDiskMB} {
		if v != nil && *v < 0 {
			return apierr.InvalidRequest("quota limits must not be negative (0 is unlimited, null the platform default)")
		}
	}
	return nil
}

// TeamQuota is the body of the quota routes (docs/api.md): the overrides, the limits in effect and what
// the team's capsules use now.
type TeamQuota struct {
	Overrides QuotaOverrides `json:"overrides"`
	Effective Quota          `json:"effective"`
	Usage     Quota          `json:"usage"`
}

// demand is what an action adds to a team's usage.
type demand struct {
	capsules, vcpus, memoryMB, pausedDiskMB int32
}

// effective applies o over the platform defaults.
func (s *Service) effective(o QuotaOverrides) Quota {
	q := s.quota
	for _, f := range []struct {
		dst *int32
		src *int32
	}{{&q.Capsules, o.Capsules}, {&q.VCPUs, o.VCPUs}, {&q.MemoryMB, o.MemoryMB}, {&q.PausedDiskMB, o.PausedDiskMB}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	return q
}

// overrides reads team's overrides (none: every limit is the platform default).
func overrides(ctx context.Context, q *db.Queries, team uuid.UUID) (QuotaOverrides, error) {
	row, err := q.GetTeamQuota(ctx, team)
	if store.IsNotFound(err) {
		return QuotaOverrides{}, nil
	}
	if err != nil {
		return QuotaOverrides{}, fmt.Errorf("read team quota: %w", err)
	}
	return QuotaOverrides{Capsules: row.Capsules, VCPUs: row.VCPUs, MemoryMB: row.MemoryMB, PausedDiskMB: row.PausedDiskMB}, nil
}

// TeamQuota returns team's overrides, effective limits and usage.
func (s *Service) TeamQuota(ctx context.Context, team uuid.UUID) (TeamQuota, error) {
	if _, err := s.Store.GetTeamAnyState(ctx, team); err != nil {
		if store.IsNotFound(err) {
			return TeamQuota{}, apierr.NotFound("team not found")
		}
		return TeamQuota{}, apierr.Internal(err)
	}
	o, err := overrides(ctx, s.Store.Queries, team)
	if err != nil {
		return TeamQuota{}, apierr.Internal(err)
	}
	u, err := s.Store.TeamQuotaUsage(ctx, team)
	if err != nil {
		return TeamQuota{}, apierr.Internal(fmt.Errorf("read team usage: %w", err))
	}
	return TeamQuota{Overrides: o, Effective: s.effective(o), Usage: usage(u)}, nil
}

// SetTeamQuota replaces team's overrides and returns the result.
func (s *Service) SetTeamQuota(ctx context.Context, team uuid.UUID, o QuotaOverrides) (TeamQuota, error) {
	if err := o.Validate(); err != nil {
		return TeamQuota{}, err
	}
	if _, err := s.Store.GetTeamAnyState(ctx, team); err != nil {
		if store.IsNotFound(err) {
			return TeamQuota{}, apierr.NotFound("team not found")
		}
		return TeamQuota{}, apierr.Internal(err)
	}
	if _, err := s.Store.UpsertTeamQuota(ctx, db.UpsertTeamQuotaParams{
		TeamID: team, Capsules: o.Capsules, VCPUs: o.VCPUs, MemoryMB: o.MemoryMB, PausedDiskMB: o.PausedDiskMB,
	}); err != nil {
		return TeamQuota{}, apierr.Internal(fmt.Errorf("write team quota: %w", err))
	}
	s.Log.Info("team quota set", "team_id", team)
	return s.TeamQuota(ctx, team)
}

func usage(u db.TeamQuotaUsageRow) Quota {
	return Quota{Capsules: u.Capsules, VCPUs: u.VCPUs, MemoryMB: u.MemoryMB, PausedDiskMB: u.PausedDiskMB}
}

// checkQuota reads team's limits and usage through q and refuses d when it does not fit:
// 429 quota_exceeded naming the limit.
func (s *Service) checkQuota(ctx context.Context, q *db.Queries, team uuid.UUID, d demand) error {
	o, err := overrides(ctx, q, team)
	if err != nil {
		return apierr.Internal(err)
	}
	lim := s.effective(o)
	if !lim.limits(d) {
		return nil
	}
	row, err := q.TeamQuotaUsage(ctx, team)
	if err != nil {
		return apierr.Internal(fmt.Errorf("read team usage: %w", err))
	}
	u := usage(row)
	for _, c := range []struct {
		name      string
		used, lim int32
		add       int32
	}{
		{"running capsules", u.Capsules, lim.Capsules, d.capsules},
		{"vCPUs", u.VCPUs, lim.VCPUs, d.vcpus},
		{"memory MB", u.MemoryMB, lim.MemoryMB, d.memoryMB},
		{"paused capsules' disk MB", u.PausedDiskMB, lim.PausedDiskMB, d.pausedDiskMB},
	} {
		if c.lim == 0 || c.add <= 0 || int64(c.used)+int64(c.add) <= int64(c.lim) {
			continue
		}
		msg := fmt.Sprintf("team quota exceeded: %s %d/%d", c.name, c.used, c.lim)
		if c.add > 1 {
			msg += fmt.Sprintf(", this needs %d more", c.add)
		}
		return apierr.QuotaExceeded(msg)
	}
	return nil
}

// limits reports whether any limit of q applies to d.
func (q Quota) limits(d demand) bool {
	return (q.Capsules > 0 && d.capsules > 0) || (q.VCPUs > 0 && d.vcpus > 0) ||
		(q.MemoryMB > 0 && d.memoryMB > 0) || (q.PausedDiskMB > 0 && d.pausedDiskMB > 0)
}

// withQuota runs fn if d fits team's quota (429 quota_exceeded otherwise, and fn does not run).
//
// When a limit applies, fn runs in a transaction holding team's quota lock (LockTeamQuota) and gets
// that transaction's q: what fn records is seen by the next check, so concurrent actions cannot
// overshoot. fn must then do all its database work through q — a second connection taken while the
// lock is held could wait for ever on a pool that lock holders exhausted. A busy lock is retried
// without holding a connection. The transaction is not cut short by ctx: fn's records must be kept.
// When no limit applies, fn runs at once with the pool's q (s.Store.Queries).
func (s *Service) withQuota(ctx context.Context, team uuid.UUID, d demand, fn func(q *db.Queries) error) error {
	o, err := overrides(ctx, s.Store.Queries, team)
	if err != nil {
		return apierr.Internal(err)
	}
	if !s.effective(o).limits(d) {
		return fn(s.Store.Queries)
	}
	bg := context.WithoutCancel(ctx)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		var (
			fnErr error
			busy  bool
		)
		err := s.Store.Tx(bg, func(q *db.Queries) error {
			if _, err := q.LockTeamQuota(bg, team); err != nil {
				switch {
				case store.IsLockNotAvailable(err):
					busy = true
					return err
				case store.IsNotFound(err):
					return apierr.NotFound("team not found")
				}
				return apierr.Internal(fmt.Errorf("lock team quota: %w", err))
			}
			if err := s.checkQuota(bg, q, team, d); err != nil {
				return err
			}
			fnErr = fn(q)
			return nil
		})
		if !busy {
			if err != nil {
				return apierr.From(err)
			}
			return fnErr
		}
		select {
		case <-ctx.Done():
			return apierr.Internal(fmt.Errorf("wait for the team quota lock: %w", ctx.Err()))
		case <-time.After(wait):
		}
	}
}

// GET /v1/teams/{id}/quotas → the caller's team's quota and usage (docs/api.md).
func (s *Service) handleTeamQuota(w http.ResponseWriter, r *http.Request) {
	team, err := ids.Team.Parse(r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, apierr.InvalidRequest("invalid team ID"))
		return
	}
	if caller := httpapi.Identity(r); caller.TeamID == "" || caller.TeamID != ids.Team.Format(team) {
		apierr.Write(w, r, apierr.Forbidden("your token is scoped to another team: use POST /v1/auth/switch-team first"))
		return
	}
	out, err := s.TeamQuota(r.Context(), team)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// GET /v1/admin/teams/{id}/quotas → any team's quota and usage.
func (s *Service) handleAdminTeamQuota(w http.ResponseWriter, r *http.Request) {
	team, err := ids.Team.Parse(r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, apierr.InvalidRequest("invalid team ID"))
		return
	}
	out, err := s.TeamQuota(r.Context(), team)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// PUT /v1/admin/teams/{id}/quotas {capsules, vcpus, memory_mb, paused_disk_mb} → the team's quota;
// null (or omitted) is the platform default, 0 unlimited.
func (s *Service) handleAdminSetTeamQuota(w http.ResponseWriter, r *http.Request) {
	team, err := ids.Team.Parse(r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, apierr.InvalidRequest("invalid team ID"))
		return
	}
	var req QuotaOverrides
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.SetTeamQuota(r.Context(), team, req)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	audit.Record(context.WithoutCancel(r.Context()), s.Store.Queries, audit.Entry{Team: team, Actor: httpapi.Identity(r),
		ResourceType: "team", ResourceID: ids.Team.Format(team), Action: "team.quota_set", Scope: audit.ScopeAdmin,
		Metadata: map[string]any{"capsules": req.Capsules, "vcpus": req.VCPUs, "memory_mb": req.MemoryMB, "paused_disk_mb": req.PausedDiskMB}})
	httpapi.WriteJSON(w, http.StatusOK, out)
}
