package audit

import "github.com/google/uuid"

// Notification events (docs/api.md).
const (
	EventCapsuleCreated          = "capsule.created"
	EventCapsuleRunning          = "capsule.running"
	EventCapsulePaused           = "capsule.paused"
	EventCapsuleDestroyed        = "capsule.destroyed"
	EventTemplateSnapshotCreated = "template.snapshot.created"
	EventTemplateSnapshotDeleted = "template.snapshot.deleted"
	EventHostUp                  = "host.up"
	EventHostDown                = "host.down"
)

// Events lists every event a channel can subscribe to, in the contract's order.
var Events = []string{
	EventCapsuleCreated, EventCapsuleRunning, EventCapsulePaused, EventCapsuleDestroyed,
	EventTemplateSnapshotCreated, EventTemplateSnapshotDeleted, EventHostUp, EventHostDown,
}

// actionEvents maps the audited actions that notify channels to their event.
var actionEvents = map[string]string{
	"capsule.create":    EventCapsuleCreated,
	"capsule.resume":    EventCapsuleRunning,
	"capsule.pause":     EventCapsulePaused,
	"capsule.destroy":   EventCapsuleDestroyed,
	"template.snapshot": EventTemplateSnapshotCreated,
	"template.delete":   EventTemplateSnapshotDeleted,
	"host.up":           EventHostUp,
	"host.down":         EventHostDown,
}

// EventFor returns the event a successful action notifies, if any.
func EventFor(action string) (string, bool) {
	ev, ok := actionEvents[action]
	return ev, ok
}

// NotifyQueue is the jobs queue of channel deliveries: one job per (event, channel).
const NotifyQueue = "notify"

// NotifyMaxAttempts is how many times a delivery is tried before its job fails for good.
const NotifyMaxAttempts = 10

// Event is the payload of a notification (docs/api.md), as webhooks receive it.
type Event struct {
	Event     string        `json:"event"`
	Timestamp string        `json:"timestamp"` // RFC 3339, UTC
	TeamID    string        `json:"team_id"`
	Actor     EventActor    `json:"actor"`
	Resource  EventResource `json:"resource"`
}

// EventActor is who caused an event: type user, api_key or system (no id or name).
type EventActor struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// EventResource is what an event is about (a capsule, template or host).
type EventResource struct {
	ID   string `json:"id,omitempty"`
	Type string `json:"type"`
}

// Notification is the payload of a NotifyQueue job: one event for one channel. DeliveryID is fixed
// when the job is queued, so every attempt of a delivery carries the same X-Wrenn-Delivery.
type Notification struct {
	Event
	ChannelID  uuid.UUID `json:"channel_id"`
	DeliveryID uuid.UUID `json:"delivery_id"`
}
