// Package audit owns the audit log (docs/api.md): recording capsule, template, key, member and host actions,
// and the /v1/audit-logs and /v1/admin/audit-logs listings.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Scopes of entries: team entries are visible to every member, admin entries to owners and admins.
const (
	ScopeTeam  = "team"
	ScopeAdmin = "admin"
)

// Entry is one action to record.
type Entry struct {
	Team         uuid.UUID
	Actor        auth.Identity // zero Identity = system actor
	ResourceType string        // capsule, template, api_key, member, host, team, channel
	ResourceID   string        // public id (cl-…, key-…) or name
	Action       string        // <resource>.<verb>, e.g. capsule.create
	Scope        string        // ScopeTeam or ScopeAdmin
	Failed       bool
	Metadata     map[string]any
}

// Record writes e through q (a pool or a transaction). Recording never fails the caller's operation:
// errors are logged and dropped. A successful action that maps to a notification event (EventFor)
// also queues one NotifyQueue job per channel of the team subscribed to it, in the same statement.
func Record(ctx context.Context, q *db.Queries, e Entry) {
	p := db.InsertAuditLogParams{
		TeamID:       e.Team,
		ActorType:    auth.ActorSystem,
		ResourceType: e.ResourceType,
		Action:       e.Action,
		Scope:        e.Scope,
		Status:       "success",
	}
	if p.Scope == "" {
		p.Scope = ScopeTeam
	}
	if e.Failed {
		p.Status = "failure"
	}
	if e.ResourceID != "" {
		p.ResourceID = &e.ResourceID
	}
	if typ, id, name := e.Actor.Actor(); typ != auth.ActorSystem {
		if u, ok := parseActor(id); ok {
			p.ActorType, p.ActorID = typ, &u
			if name != "" {
				p.ActorName = &name
			}
		}
	}
	if len(e.Metadata) > 0 {
		b, err := json.Marshal(e.Metadata)
		if err == nil {
			p.Metadata = b
		}
	}
	ctx = context.WithoutCancel(ctx)
	var err error
	if event, ok := EventFor(e.Action); ok && !e.Failed {
		err = insertNotify(ctx, q, p, event, e)
	} else {
		_, err = q.InsertAuditLog(ctx, p)
	}
	if err != nil {
		slog.Default().Warn("record audit entry", "action", e.Action, "resource", e.ResourceID, "err", err)
	}
}

// insertNotify inserts entry p and queues event for the team's subscribed channels.
func insertNotify(ctx context.Context, q *db.Queries, p db.InsertAuditLogParams, event string, e Entry) error {
	typ, id, name := e.Actor.Actor()
	if p.ActorType == auth.ActorSystem {
		typ, id, name = auth.ActorSystem, "", ""
	}
	payload, err := json.Marshal(Event{
		Event:    event,
		TeamID:   ids.Team.Format(e.Team),
		Actor:    EventActor{Type: typ, ID: id, Name: name},
		Resource: EventResource{ID: e.ResourceID, Type: e.ResourceType},
	})
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	_, err = q.InsertAuditLogNotify(ctx, db.InsertAuditLogNotifyParams{
		TeamID: p.TeamID, ActorType: p.ActorType, ActorID: p.ActorID, ActorName: p.ActorName,
		ResourceType: p.ResourceType, ResourceID: p.ResourceID, Action: p.Action, Scope: p.Scope,
		Status: p.Status, Metadata: p.Metadata,
		Queue: NotifyQueue, EventPayload: payload, MaxAttempts: NotifyMaxAttempts, Event: event,
	})
	return err
}

func parseActor(id string) (uuid.UUID, bool) {
	for _, p := range []ids.Prefix{ids.User, ids.APIKey} {
		if strings.HasPrefix(id, string(p)) {
			u, err := p.Parse(id)
			return u, err == nil
		}
	}
	return uuid.Nil, false
}
