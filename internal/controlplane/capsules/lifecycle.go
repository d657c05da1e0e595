package capsules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// liveStatuses are the statuses a capsule can be destroyed from.
var liveStatuses = []string{store.CapsulePending, "starting", store.CapsuleRunning, store.CapsulePaused, "hibernated", store.CapsuleMissing}

// Get returns capsule rawID of team (docs/api.md).
func (s *Service) Get(ctx context.Context, team uuid.UUID, rawID string) (db.Capsule, error) {
	t, err := s.Resolve(ctx, team, rawID)
	return t.Capsule, err
}

// List returns team's capsules that are not stopped or errored, newest first.
func (s *Service) List(ctx context.Context, team uuid.UUID) ([]db.Capsule, error) {
	cs, err := s.Store.ListCapsulesByTeam(ctx, team)
	if err != nil {
		return nil, apierr.Internal(err)
	}
	return cs, nil
}

// Destroy tears capsule rawID of team down and records it stopped; a stopped (or errored) capsule is
// left as it is. A host that cannot be reached answers 503 host_unavailable and changes nothing,
// except for a paused or missing capsule: nothing runs there, so it is recorded stopped and the
// reconciler destroys what is left when the host comes back.
func (s *Service) Destroy(ctx context.Context, actor auth.Identity, team uuid.UUID, rawID string) error {
	t, err := s.Resolve(ctx, team, rawID)
	if err != nil {
		return err
	}
	if t.Capsule.Status == store.CapsuleStopped || t.Capsule.Status == store.CapsuleError {
		return nil
	}
	return s.destroy(ctx, actor, t.Capsule, false)
}

// DestroyTeamCapsules destroys every capsule of team that is not stopped (team deletion or
// deactivation). Capsules whose host cannot be reached are recorded stopped anyway; the reconciler
// destroys them when their host comes back.
func (s *Service) DestroyTeamCapsules(ctx context.Context, team uuid.UUID) error {
	idList, err := s.Store.ListTeamLiveCapsuleIDs(ctx, team)
	if err != nil {
		return fmt.Errorf("list team capsules: %w", err)
	}
	var errs []error
	for _, id := range idList {
		c, err := s.Store.GetCapsuleByID(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("read capsule %s: %w", ids.Capsule.Format(id), err))
			continue
		}
		if err := s.destroy(ctx, auth.Identity{}, c, true); err != nil {
			errs = append(errs, fmt.Errorf("destroy capsule %s: %w", ids.Capsule.Format(id), err))
		}
	}
	return errors.Join(errs...)
}

// destroy asks c's agent to destroy it (not found there is fine) and records it stopped. With force,
// or for a paused or missing capsule on an unreachable host, it is recorded stopped even when the
// agent cannot be asked.
func (s *Service) destroy(ctx context.Context, actor auth.Identity, c db.Capsule, force bool) error {
	publicID := ids.Capsule.Format(c.ID)
	log := s.Log.With("capsule_id", publicID)
	agent, err := s.agentOf(ctx, c)
	if err == nil {
		_, err = agent.DestroySandbox(ctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: publicID}))
		if apierr.AgentNotFound(err) {
			err = nil
		}
		if err != nil {
			err = apierr.FromAgent(ctx, err)
		}
	}
	if err != nil {
		nothingRuns := c.Status == store.CapsulePaused || c.Status == store.CapsuleMissing
		if !force && !(nothingRuns && apierr.From(err).Code == apierr.CodeHostUnavailable) {
			return err
		}
		log.Warn("capsule recorded stopped without its host destroying it", "status", c.Status, "err", err)
	}
	bg := context.WithoutCancel(ctx)
	if _, err := s.Store.MarkCapsuleStopped(bg, db.MarkCapsuleStoppedParams{ID: c.ID, FromStatuses: liveStatuses}); err != nil && !store.IsNotFound(err) {
		return apierr.Internal(fmt.Errorf("record stopped capsule: %w", err))
	}
	if _, err := s.Store.DeleteCapsuleMetrics(bg, c.ID); err != nil {
		log.Warn("delete metrics of a stopped capsule", "err", err)
	}
	audit.Record(bg, s.Store.Queries, audit.Entry{Team: c.TeamID, Actor: actor, ResourceType: "capsule",
		ResourceID: publicID, Action: "capsule.destroy"})
	log.Info("capsule destroyed")
	return nil
}

// Pause snapshots running capsule rawID of team on its host (docs/api.md).
func (s *Service) Pause(ctx context.Context, actor auth.Identity, team uuid.UUID, rawID string) (db.Capsule, error) {
	t, err := s.Resolve(ctx, team, rawID, store.CapsuleRunning)
	if err != nil {
		return db.Capsule{}, err
	}
	// A paused capsule keeps its disk: the team's paused-disk quota must have room for it.
	var (
		c        db.Capsule
		unstored map[string][]*hav1.MetricPoint
	)
	err = s.withQuota(ctx, t.Capsule.TeamID, demand{pausedDiskMB: t.Capsule.DiskMB}, func(q *db.Queries) error {
		c, unstored, err = s.pause(ctx, actor, t, q)
		return err
	})
	s.storeMetrics(ctx, t.Capsule, unstored)
	return c, err
}

// pause persists t's metrics tiers, pauses it on its host and records it paused through q. With the
// pool's q the tiers are stored while the agent pauses; with a transaction's (withQuota) they are
// returned for the caller to store after it.
func (s *Service) pause(ctx context.Context, actor auth.Identity, t Target, q *db.Queries) (db.Capsule, map[string][]*hav1.MetricPoint, error) {
	// The tiers are taken before the pause.
	start := time.Now()
	tiers := s.flushMetrics(ctx, t.Agent, t.Capsule)
	flushed := time.Now()
	stored := make(chan struct{})
	var unstored map[string][]*hav1.MetricPoint
	if q == s.Store.Queries {
		go func() {
			defer close(stored)
			s.storeMetrics(ctx, t.Capsule, tiers)
		}()
	} else {
		unstored = tiers
		close(stored)
	}
	_, err := t.Agent.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: t.PublicID}))
	paused := time.Now()
	<-stored
	s.Log.Debug("capsule pause timing", "capsule_id", t.PublicID, "flush", flushed.Sub(start),
		"pause", paused.Sub(flushed), "store_wait", time.Since(paused))
	if err != nil {
		return db.Capsule{}, unstored, apierr.FromAgent(ctx, err)
	}
	bg := context.WithoutCancel(ctx)
	c, err := s.withAuditOn(bg, q, audit.Entry{Team: t.Capsule.TeamID, Actor: actor, ResourceType: "capsule",
		ResourceID: t.PublicID, Action: "capsule.pause"}, func() (db.Capsule, error) {
		return q.MarkCapsulePaused(bg, db.MarkCapsulePausedParams{ID: t.Capsule.ID, FromStatuses: []string{store.CapsuleRunning}})
	})
	if store.IsNotFound(err) {
		// Changed meanwhile (destroyed, or paused by the reconciler): answer what it is now.
		c, err = q.GetCapsuleByID(bg, t.Capsule.ID)
	}
	if err != nil {
		return db.Capsule{}, unstored, apierr.Internal(fmt.Errorf("record paused capsule: %w", err))
	}
	s.Log.Info("capsule paused", "capsule_id", t.PublicID)
	return c, unstored, nil
}

// Resume restores paused capsule rawID of team on its host with its template's defaults (docs/api.md).
func (s *Service) Resume(ctx context.Context, actor auth.Identity, team uuid.UUID, rawID string) (db.Capsule, error) {
	t, err := s.Resolve(ctx, team, rawID, store.CapsulePaused)
	if err != nil {
		return db.Capsule{}, err
	}
	// A resumed capsule is live again: it counts against the team's running capsules, vCPUs and memory.
	var c db.Capsule
	need := demand{capsules: 1, vcpus: t.Capsule.VCPUs, memoryMB: t.Capsule.MemoryMB}
	err = s.withQuota(ctx, t.Capsule.TeamID, need, func(q *db.Queries) error {
		c, err = s.resume(ctx, actor, t, q)
		return err
	})
	return c, err
}

// resume restores t on its host and records it running through q.
func (s *Service) resume(ctx context.Context, actor auth.Identity, t Target, q *db.Queries) (db.Capsule, error) {
	c := t.Capsule
	token, err := s.EnvdToken(c)
	if err != nil {
		return db.Capsule{}, apierr.Internal(err)
	}
	user, env, err := s.currentDefaults(ctx, c)
	if err != nil {
		return db.Capsule{}, err
	}
	start := time.Now()
	res, err := t.Agent.ResumeSandbox(ctx, connect.NewRequest(&hav1.ResumeSandboxRequest{
		SandboxId: t.PublicID, TimeoutSec: c.TimeoutSec, DefaultUser: user, DefaultEnv: env,
		EnvdAccessToken: token,
	}))
	if err != nil {
		return db.Capsule{}, apierr.FromAgent(ctx, err)
	}
	resumed := time.Now()
	defer func() {
		s.Log.Debug("capsule resume timing", "capsule_id", t.PublicID, "resume", resumed.Sub(start), "record", time.Since(resumed))
	}()
	meta := maps.Clone(c.Metadata)
	if m := res.Msg.GetMetadata(); len(m) > 0 {
		meta = m
	}
	bg := context.WithoutCancel(ctx)
	c, err = s.withAuditOn(bg, q, audit.Entry{Team: c.TeamID, Actor: actor, ResourceType: "capsule",
		ResourceID: t.PublicID, Action: "capsule.resume"}, func() (db.Capsule, error) {
		return q.SetCapsuleRunning(bg, db.SetCapsuleRunningParams{
			HostID: c.HostID, HostIP: parseIP(res.Msg.GetHostIp()), Metadata: meta,
			ID: c.ID, FromStatuses: []string{store.CapsulePaused},
		})
	})
	if store.IsNotFound(err) {
		c, err = q.GetCapsuleByID(bg, t.Capsule.ID)
	}
	if err != nil {
		return db.Capsule{}, apierr.Internal(fmt.Errorf("record resumed capsule: %w", err))
	}
	s.Log.Info("capsule resumed", "capsule_id", t.PublicID)
	return c, nil
}

// currentDefaults returns the default user and env capsule c resumes with: its template's current ones
// (docs/api.md, "Template defaults") with the capsule's own env vars and fallback user applied, or the
// copy taken at creation once the template is deleted.
func (s *Service) currentDefaults(ctx context.Context, c db.Capsule) (string, map[string]string, error) {
	if c.TemplateID == nil {
		return c.DefaultUser, c.DefaultEnv, nil
	}
	tpl, err := s.Store.GetTemplateByID(ctx, *c.TemplateID)
	if store.IsNotFound(err) {
		return c.DefaultUser, c.DefaultEnv, nil
	}
	if err != nil {
		return "", nil, apierr.Internal(fmt.Errorf("read template defaults: %w", err))
	}
	fallback := ""
	if c.FallbackUser != nil {
		fallback = *c.FallbackUser
	}
	user, env := defaults(tpl.DefaultUser, tpl.DefaultEnv, c.EnvVars, fallback)
	return user, env, nil
}

// Ping marks running capsule rawID of team active on its host and in the database (docs/api.md).
func (s *Service) Ping(ctx context.Context, team uuid.UUID, rawID string) error {
	t, err := s.Resolve(ctx, team, rawID, store.CapsuleRunning)
	if err != nil {
		return err
	}
	if _, err := t.Agent.PingSandbox(ctx, connect.NewRequest(&hav1.PingSandboxRequest{SandboxId: t.PublicID})); err != nil {
		return apierr.FromAgent(ctx, err)
	}
	s.Touch(ctx, t.Capsule.ID)
	return nil
}

// persistMetrics hands c's metrics tiers over from its agent and stores them (replacing what an
// earlier pause stored). Failures are logged: metrics never block a pause.
func (s *Service) persistMetrics(ctx context.Context, agent hostagentv1connect.HostAgentServiceClient, c db.Capsule) {
	s.storeMetrics(ctx, c, s.flushMetrics(ctx, agent, c))
}

// flushMetrics takes every tier the agent holds for c (the agent stops sampling it); nil when the agent
// has none or fails (logged).
func (s *Service) flushMetrics(ctx context.Context, agent hostagentv1connect.HostAgentServiceClient, c db.Capsule) map[string][]*hav1.MetricPoint {
	publicID := ids.Capsule.Format(c.ID)
	res, err := agent.FlushSandboxMetrics(ctx, connect.NewRequest(&hav1.FlushSandboxMetricsRequest{SandboxId: publicID}))
	if err != nil {
		s.Log.Warn("flush capsule metrics", "capsule_id", publicID, "err", err)
		return nil
	}
	if len(res.Msg.GetPoints_10M())+len(res.Msg.GetPoints_2H())+len(res.Msg.GetPoints_24H()) == 0 {
		return nil // nothing sampled since the last hand-over: keep what is stored
	}
	return map[string][]*hav1.MetricPoint{
		store.MetricsTier10m: res.Msg.GetPoints_10M(),
		store.MetricsTier2h:  res.Msg.GetPoints_2H(),
		store.MetricsTier24h: res.Msg.GetPoints_24H(),
	}
}

// storeMetrics replaces c's persisted tiers with tiers (nil: nothing to store). Failures are logged.
func (s *Service) storeMetrics(ctx context.Context, c db.Capsule, tiers map[string][]*hav1.MetricPoint) {
	if tiers == nil {
		return
	}
	bg := context.WithoutCancel(ctx)
	err := s.Store.Tx(bg, func(q *db.Queries) error {
		if _, err := q.DeleteCapsuleMetrics(bg, c.ID); err != nil {
			return err
		}
		for tier, pts := range tiers {
			if _, err := q.InsertCapsuleMetrics(bg, metricsRows(c.ID, tier, pts)); err != nil {
				return fmt.Errorf("tier %s: %w", tier, err)
			}
		}
		return nil
	})
	if err != nil {
		s.Log.Warn("store capsule metrics", "capsule_id", ids.Capsule.Format(c.ID), "err", err)
	}
}
