package capsules

import (
	"context"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// MaxForks bounds the capsules one fork makes (docs/api.md).
const MaxForks = 16

// forkRequest is the body of POST /v1/capsules/{id}/fork.
type forkRequest struct {
	Count *int32 `json:"count"`
}

func (s *Service) handleFork(w http.ResponseWriter, r *http.Request) {
	team, err := teamRoute(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	var req forkRequest
	if err := apierr.DecodeOptionalJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	count := int32(1)
	if req.Count != nil {
		count = *req.Count
	}
	cs, err := s.Fork(r.Context(), httpapi.Identity(r), team, r.PathValue("id"), count)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	out := make([]Capsule, 0, len(cs))
	for _, c := range cs {
		out = append(out, s.View(c))
	}
	httpapi.WriteJSON(w, http.StatusCreated, out)
}

// Fork makes count new running capsules of team that continue from a running capsule's memory, processes
// and files at this moment (docs/api.md): on the source's host, each with its own id, network and envd
// token; the source runs on. The copies count against the team's quota like creates; all are made or none.
func (s *Service) Fork(ctx context.Context, actor auth.Identity, team uuid.UUID, rawID string, count int32) ([]db.Capsule, error) {
	if count < 1 || count > MaxForks {
		return nil, apierr.InvalidRequestf("count must be 1..%d", MaxForks)
	}
	t, err := s.Resolve(ctx, team, rawID, store.CapsuleRunning)
	if err != nil {
		return nil, err
	}
	src := t.Capsule
	need := demand{capsules: count, vcpus: src.VCPUs * count, memoryMB: src.MemoryMB * count}
	if err := s.checkQuota(ctx, s.Store.Queries, team, need); err != nil {
		return nil, err
	}
	if src.HostID == nil {
		return nil, apierr.InvalidState("sandbox has no host")
	}
	if hs, ok := s.sched.(HostScheduler); ok {
		if _, err := hs.PickHost(ctx, *src.HostID, team, src.MemoryMB*count, src.DiskMB*count); err != nil {
			return nil, err
		}
	}
	rows := make([]db.Capsule, count)
	req := &hav1.ForkSandboxRequest{SandboxId: t.PublicID}
	err = s.withQuota(ctx, team, need, func(q *db.Queries) error {
		for i := range rows {
			id := uuid.New()
			token, err := newEnvdToken()
			if err != nil {
				return apierr.Internal(err)
			}
			sealed, err := s.sealEnvdToken(id, token)
			if err != nil {
				return apierr.Internal(err)
			}
			// A fork of a secure capsule is secure too, with a traffic token of its own.
			var sealedTraffic []byte
			if src.Secure {
				if sealedTraffic, err = s.newTrafficToken(id); err != nil {
					return apierr.Internal(err)
				}
			}
			rows[i], err = q.CreateCapsule(ctx, db.CreateCapsuleParams{
				ID: &id, EnvdToken: sealed, TeamID: team, TemplateID: src.TemplateID, TemplateName: src.TemplateName,
				HostID: src.HostID, VCPUs: src.VCPUs, MemoryMB: src.MemoryMB, DiskMB: src.DiskMB, TimeoutSec: src.TimeoutSec,
				AllowInternet: src.AllowInternet, DefaultUser: src.DefaultUser, DefaultEnv: src.DefaultEnv,
				Secure: src.Secure, TrafficToken: sealedTraffic, EnvVars: src.EnvVars, FallbackUser: src.FallbackUser,
			})
			if err != nil {
				return apierr.Internal(fmt.Errorf("insert capsule: %w", err))
			}
			req.Targets = append(req.Targets, &hav1.ForkTarget{SandboxId: ids.Capsule.Format(id), EnvdAccessToken: token})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	bg := context.WithoutCancel(ctx)
	entry := func(c db.Capsule, failed bool) audit.Entry {
		return audit.Entry{Team: team, Actor: actor, ResourceType: "capsule", ResourceID: ids.Capsule.Format(c.ID),
			Action: "capsule.create", Failed: failed, Metadata: map[string]any{"template": src.TemplateName, "forked_from": t.PublicID}}
	}
	res, err := t.Agent.ForkSandbox(ctx, connect.NewRequest(req))
	if err == nil && len(res.Msg.GetSandboxes()) != len(rows) {
		err = fmt.Errorf("agent made %d of %d copies", len(res.Msg.GetSandboxes()), len(rows))
	}
	if err != nil {
		for _, c := range rows {
			if _, merr := s.Store.MarkCapsuleError(bg, c.ID); merr != nil && !store.IsNotFound(merr) {
				s.Log.Error("record failed fork", "capsule_id", ids.Capsule.Format(c.ID), "err", merr)
			}
			audit.Record(bg, s.Store.Queries, entry(c, true))
		}
		s.Log.Warn("fork failed", "capsule_id", t.PublicID, "err", err)
		return nil, apierr.FromAgent(ctx, err)
	}
	for i, c := range rows {
		sb := res.Msg.GetSandboxes()[i]
		rows[i], err = s.withAudit(bg, entry(c, false), func() (db.Capsule, error) {
			return s.Store.SetCapsuleRunning(bg, db.SetCapsuleRunningParams{
				HostID: src.HostID, HostIP: parseIP(sb.GetHostIp()), Metadata: sb.GetMetadata(),
				ID: c.ID, FromStatuses: []string{store.CapsulePending},
			})
		})
		if store.IsNotFound(err) {
			return nil, apierr.InvalidState("a forked sandbox was destroyed while it was being created")
		}
		if err != nil {
			return nil, apierr.Internal(fmt.Errorf("record running capsule: %w", err))
		}
	}
	s.Log.Info("capsule forked", "capsule_id", t.PublicID, "count", count)
	return rows, nil
}
