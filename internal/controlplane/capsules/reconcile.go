package capsules

import (
	"context"
	"errors"
	"fmt"
	"sync"
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

// PendingGrace is how long a pending capsule its host does not know is left alone: its creation may
// still be on its way to the host.
const PendingGrace = time.Minute

// pruneEvery is how often old usage samples are deleted.
const pruneEvery = time.Hour

// Run reconciles capsules with their hosts every ReconcileInterval and samples team usage every
// StatsInterval until ctx ends; it returns nil then.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		every(ctx, s.reconcileInterval, func(ctx context.Context) {
			if err := s.Reconcile(ctx); err != nil {
				s.Log.Warn("reconcile capsules", "err", err)
			}
		})
	}()
	go func() {
		defer wg.Done()
		var pruned time.Time
		every(ctx, s.statsInterval, func(ctx context.Context) {
			now := time.Now()
			if err := s.SampleStats(ctx, now); err != nil {
				s.Log.Warn("sample team stats", "err", err)
			}
			if now.Sub(pruned) >= pruneEvery {
				if err := s.PruneStats(ctx, now); err != nil {
					s.Log.Warn("prune team stats", "err", err)
				} else {
					pruned = now
				}
			}
		})
	}()
	wg.Wait()
	return nil
}

// every calls fn at once, then every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Reconcile makes the database agree with every online host's agent: capsules the agent paused for
// inactivity become paused (system audit entry), missing capsules it reports running become running,
// paused capsules it resumed itself (an agent restarted with -on-shutdown=pause) become running (system
// audit entry), running, missing and stale pending capsules it does not know become stopped, and
// capsules it still has that the database records stopped or errored are destroyed on it.
func (s *Service) Reconcile(ctx context.Context) error {
	hosts, err := s.Store.ListOnlineHosts(ctx)
	if err != nil {
		return fmt.Errorf("list online hosts: %w", err)
	}
	var errs []error
	for _, h := range hosts {
		if err := s.reconcileHost(ctx, h.ID); err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", ids.Host.Format(h.ID), err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) reconcileHost(ctx context.Context, host uuid.UUID) error {
	ctx, cancel := context.WithTimeout(ctx, hostCallTimeout)
	defer cancel()
	// The database first: a capsule it records running was created on the host before the listing, so
	// the host not knowing it means it is gone.
	rows, err := s.Store.ListCapsulesByHost(ctx, host)
	if err != nil {
		return fmt.Errorf("list capsules: %w", err)
	}
	agent, err := s.Agents.Agent(ctx, host)
	if err != nil {
		return err
	}
	res, err := agent.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{}))
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	known := map[uuid.UUID]hav1.SandboxStatus{}
	hostIPs := map[uuid.UUID]string{}
	for _, sb := range res.Msg.GetSandboxes() {
		if id, err := ids.Capsule.Parse(sb.GetSandboxId()); err == nil {
			known[id] = sb.GetStatus()
			hostIPs[id] = sb.GetHostIp()
		}
	}
	autoPaused := map[uuid.UUID]bool{}
	for _, raw := range res.Msg.GetAutoPausedSandboxIds() {
		if id, err := ids.Capsule.Parse(raw); err == nil {
			autoPaused[id] = true
		}
	}
	// Ids drained from the host are recorded even if the capsule was not in the listing above.
	for id := range autoPaused {
		if st, ok := known[id]; ok && st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
			continue // resumed (or destroyed and recreated) since
		}
		c, err := s.Store.GetCapsuleByID(ctx, id)
		if err == nil && c.HostID != nil && *c.HostID == host {
			if _, ok := known[id]; ok {
				s.recordAutoPause(ctx, agent, c)
			} else if c.Status == store.CapsuleRunning || c.Status == store.CapsuleMissing {
				s.recordGone(ctx, c, "its host destroyed it after a failed auto-pause")
			}
		}
	}
	now := time.Now()
	for _, c := range rows {
		if autoPaused[c.ID] {
			continue
		}
		st, ok := known[c.ID]
		switch {
		case ok && st == hav1.SandboxStatus_SANDBOX_STATUS_RUNNING && c.Status == store.CapsuleMissing:
			if _, err := s.Store.MarkCapsuleRunningAgain(ctx, c.ID); err == nil {
				s.Log.Info("missing capsule is running again", "capsule_id", ids.Capsule.Format(c.ID))
			}
		case ok && st == hav1.SandboxStatus_SANDBOX_STATUS_RUNNING && c.Status == store.CapsulePaused:
			// Resumed by its host: an agent that paused its capsules at shutdown resumes them at start.
			s.recordHostResume(ctx, c, hostIPs[c.ID])
		case ok && st == hav1.SandboxStatus_SANDBOX_STATUS_PAUSED && (c.Status == store.CapsuleRunning || c.Status == store.CapsuleMissing):
			// Paused for inactivity, its id drained by another control plane.
			s.recordAutoPause(ctx, agent, c)
		case !ok && (c.Status == store.CapsuleRunning || c.Status == store.CapsuleMissing):
			s.recordGone(ctx, c, "its host does not know it")
		case !ok && c.Status == store.CapsulePending && now.Sub(c.CreatedAt) > PendingGrace:
			s.recordGone(ctx, c, "its creation never reached its host")
		}
	}
	s.destroyOrphans(ctx, agent, known)
	return nil
}

// recordAutoPause records capsule c paused by its host for inactivity, with its metrics tiers and a
// system audit entry.
func (s *Service) recordAutoPause(ctx context.Context, agent hostagentv1connect.HostAgentServiceClient, c db.Capsule) {
	if c.Status != store.CapsuleRunning && c.Status != store.CapsuleMissing {
		return
	}
	s.persistMetrics(ctx, agent, c)
	if _, err := s.Store.MarkCapsulePaused(ctx, db.MarkCapsulePausedParams{ID: c.ID, FromStatuses: []string{c.Status}}); err != nil {
		if !store.IsNotFound(err) {
			s.Log.Warn("record auto-paused capsule", "capsule_id", ids.Capsule.Format(c.ID), "err", err)
		}
		return
	}
	audit.Record(ctx, s.Store.Queries, audit.Entry{Team: c.TeamID, Actor: auth.Identity{}, ResourceType: "capsule",
		ResourceID: ids.Capsule.Format(c.ID), Action: "capsule.pause", Metadata: map[string]any{"reason": "inactivity"}})
	s.Log.Info("capsule paused for inactivity", "capsule_id", ids.Capsule.Format(c.ID))
}

// recordHostResume records paused capsule c running again at hostIP: its host resumed it.
func (s *Service) recordHostResume(ctx context.Context, c db.Capsule, hostIP string) {
	if _, err := s.Store.SetCapsuleRunning(ctx, db.SetCapsuleRunningParams{
		HostID: c.HostID, HostIP: parseIP(hostIP), Metadata: c.Metadata, ID: c.ID, FromStatuses: []string{store.CapsulePaused},
	}); err != nil {
		if !store.IsNotFound(err) {
			s.Log.Warn("record capsule resumed by its host", "capsule_id", ids.Capsule.Format(c.ID), "err", err)
		}
		return
	}
	audit.Record(ctx, s.Store.Queries, audit.Entry{Team: c.TeamID, Actor: auth.Identity{}, ResourceType: "capsule",
		ResourceID: ids.Capsule.Format(c.ID), Action: "capsule.resume", Metadata: map[string]any{"reason": "resumed by its host"}})
	s.Log.Info("capsule resumed by its host", "capsule_id", ids.Capsule.Format(c.ID))
}

// recordGone records capsule c stopped: its host no longer has it.
func (s *Service) recordGone(ctx context.Context, c db.Capsule, why string) {
	if _, err := s.Store.MarkCapsuleStopped(ctx, db.MarkCapsuleStoppedParams{ID: c.ID, FromStatuses: []string{c.Status}}); err != nil {
		if !store.IsNotFound(err) {
			s.Log.Warn("record vanished capsule", "capsule_id", ids.Capsule.Format(c.ID), "err", err)
		}
		return
	}
	if _, err := s.Store.DeleteCapsuleMetrics(ctx, c.ID); err != nil {
		s.Log.Warn("delete metrics of a stopped capsule", "capsule_id", ids.Capsule.Format(c.ID), "err", err)
	}
	s.Log.Info("capsule recorded stopped", "capsule_id", ids.Capsule.Format(c.ID), "was", c.Status, "reason", why)
}

// destroyOrphans destroys capsules a host still has although the database records them stopped or
// errored (destroyed while the host was unreachable, or created after their request failed). Capsules
// without a row are left alone: they are not this control plane's to judge.
func (s *Service) destroyOrphans(ctx context.Context, agent hostagentv1connect.HostAgentServiceClient, known map[uuid.UUID]hav1.SandboxStatus) {
	if len(known) == 0 {
		return
	}
	list := make([]uuid.UUID, 0, len(known))
	for id := range known {
		list = append(list, id)
	}
	rows, err := s.Store.ListCapsuleStatuses(ctx, list)
	if err != nil {
		s.Log.Warn("read statuses of host capsules", "err", err)
		return
	}
	for _, r := range rows {
		if r.Status != store.CapsuleStopped && r.Status != store.CapsuleError {
			continue
		}
		publicID := ids.Capsule.Format(r.ID)
		_, err := agent.DestroySandbox(ctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: publicID}))
		if err != nil && !apierr.AgentNotFound(err) {
			s.Log.Warn("destroy orphaned capsule", "capsule_id", publicID, "err", err)
			continue
		}
		s.Log.Info("orphaned capsule destroyed on its host", "capsule_id", publicID, "status", r.Status)
	}
}
