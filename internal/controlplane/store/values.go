package store

import "github.com/google/uuid"

// Fixed rows the first migration creates.
var (
	// PlatformTeamID owns platform templates, regular hosts and admin capsules.
	PlatformTeamID = uuid.UUID{}
	// BaseTemplateID is the platform "base" template (filesystem only, root, empty env).
	BaseTemplateID = uuid.MustParse("00000000-0000-0000-0000-000000000001")
)

// The values the schema's CHECK constraints accept for each enum-like column.
// docs/data-model.md describes them.
const (
	UserInactive = "inactive"
	UserActive   = "active"
	UserDisabled = "disabled"
	UserDeleted  = "deleted"

	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"

	CapsulePending    = "pending"
	CapsuleStarting   = "starting"
	CapsuleRunning    = "running"
	CapsulePaused     = "paused"
	CapsuleHibernated = "hibernated"
	CapsuleMissing    = "missing"
	CapsuleStopped    = "stopped"
	CapsuleError      = "error"

	TemplateBase     = "base"
	TemplateSnapshot = "snapshot"

	HostRegular = "regular"
	HostBYOC    = "byoc"

	HostPending     = "pending"
	HostOnline      = "online"
	HostOffline     = "offline"
	HostDraining    = "draining"
	HostUnreachable = "unreachable"

	BuildPending   = "pending"
	BuildRunning   = "running"
	BuildSuccess   = "success"
	BuildFailed    = "failed"
	BuildCancelled = "cancelled"

	TokenActivation    = "activation"
	TokenPasswordReset = "password_reset"

	ActorUser   = "user"
	ActorAPIKey = "api_key"
	ActorSystem = "system"

	ScopeTeam  = "team"
	ScopeAdmin = "admin"

	AuditSuccess = "success"
	AuditFailure = "failure"

	MetricsTier10m = "10m"
	MetricsTier2h  = "2h"
	MetricsTier24h = "24h"

	JobPending = "pending"
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)
