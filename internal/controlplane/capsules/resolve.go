// Package capsules owns the capsule lifecycle in the control plane: create (template resolution,
// scheduling, agent call), list, get, destroy, pause, resume, ping, snapshots and templates, metrics and
// team stats, and the reconciler that makes the database agree with what agents report. It also
// resolves /v1/capsules/{id}/… requests to a capsule and its agent (docs/api.md) for the guest routes.
package capsules

import (
	"context"
	"log/slog"
	"slices"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/seal"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Target is a resolved /v1/capsules/{id} request: the capsule row and a client of its host's agent.
type Target struct {
	Capsule  db.Capsule
	PublicID string // cl-…
	Agent    hostagentv1connect.HostAgentServiceClient
}

// Resolver resolves capsule ids of a team to capsules and agents (docs/api.md).
type Resolver struct {
	Store  *store.Store
	Agents fleet.Agents
	Log    *slog.Logger
	// Tokens seals capsules' envd access tokens (docs/security.md).
	Tokens *seal.Box
}

// TeamOf returns the team an authenticated caller acts for: 403 no_team without one.
func TeamOf(id auth.Identity) (uuid.UUID, error) {
	if id.TeamID == "" {
		return uuid.Nil, apierr.NoTeam("no team selected: create a team or switch to one")
	}
	u, err := ids.Team.Parse(id.TeamID)
	if err != nil {
		return uuid.Nil, apierr.NoTeam("no team selected: create a team or switch to one")
	}
	return u, nil
}

// ParseID checks step 1 of docs/api.md: 400 "invalid sandbox ID".
func ParseID(raw string) (uuid.UUID, error) {
	u, err := ids.Capsule.Parse(raw)
	if err != nil {
		return uuid.Nil, apierr.InvalidRequest("invalid sandbox ID")
	}
	return u, nil
}

// Resolve runs docs/api.md checks in order for capsule raw of team: id format (400), existence in the
// team (404), status among needs (409 invalid_state; no needs = any status), host reachable (503).
// With no needs the agent is not looked up (Target.Agent is nil).
func (r *Resolver) Resolve(ctx context.Context, team uuid.UUID, raw string, needs ...string) (Target, error) {
	return r.resolve(ctx, team, raw, false, needs)
}

// ResolveActive is Resolve for a running capsule that also records the call as capsule activity
// (last_active_at, docs/api.md) in the same database round trip.
func (r *Resolver) ResolveActive(ctx context.Context, team uuid.UUID, raw string) (Target, error) {
	return r.resolve(ctx, team, raw, true, []string{store.CapsuleRunning})
}

func (r *Resolver) resolve(ctx context.Context, team uuid.UUID, raw string, touch bool, needs []string) (Target, error) {
	id, err := ParseID(raw)
	if err != nil {
		return Target{}, err
	}
	var row db.GetCapsuleWithHostRow
	if touch {
		var tr db.GetCapsuleWithHostTouchRow
		tr, err = r.Store.GetCapsuleWithHostTouch(ctx, db.GetCapsuleWithHostTouchParams{TeamID: team, ID: id})
		row = db.GetCapsuleWithHostRow(tr)
	} else {
		row, err = r.Store.GetCapsuleWithHost(ctx, db.GetCapsuleWithHostParams{TeamID: team, ID: id})
	}
	if err != nil {
		if store.IsNotFound(err) {
			return Target{}, apierr.NotFound("sandbox not found")
		}
		return Target{}, apierr.Internal(err)
	}
	c := row.Capsule
	t := Target{Capsule: c, PublicID: ids.Capsule.Format(c.ID)}
	if len(needs) == 0 {
		return t, nil
	}
	if !slices.Contains(needs, c.Status) {
		return Target{}, StateError(c.Status, needs...)
	}
	if c.HostID == nil {
		return Target{}, apierr.HostUnavailable("sandbox host is not reachable")
	}
	if fast, ok := r.Agents.(fleet.HostAgents); ok && row.HostStatus != nil {
		t.Agent, err = fast.AgentOf(*c.HostID, *row.HostStatus, row.HostAddress)
	} else {
		t.Agent, err = r.Agents.Agent(ctx, *c.HostID)
	}
	if err != nil {
		return Target{}, err
	}
	return t, nil
}

// StateError is the 409 invalid_state of a capsule in status that is not one of needs.
func StateError(status string, needs ...string) error {
	if len(needs) == 1 && needs[0] == store.CapsulePaused {
		return apierr.InvalidState("sandbox is not paused (status: " + status + ")")
	}
	return apierr.InvalidState("sandbox is not running (status: " + status + ")")
}

// Touch records activity on a running capsule (last_active_at); failures are only logged.
func (r *Resolver) Touch(ctx context.Context, id uuid.UUID) {
	if _, err := r.Store.TouchCapsule(context.WithoutCancel(ctx), id); err != nil && r.Log != nil {
		r.Log.Warn("record capsule activity", "capsule_id", ids.Capsule.Format(id), "err", err)
	}
}
