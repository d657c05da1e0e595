// Package auth authenticates control-plane callers (docs/api.md): passwords, user and host JWTs,
// API keys, one-time tokens, team roles, and the HTTP and WebSocket credential checks.
package auth

import (
	"context"
	"fmt"
)

// Method is how a caller proved who it is.
type Method int

const (
	MethodJWT    Method = iota + 1 // Authorization: Bearer <user JWT>
	MethodAPIKey                   // X-API-Key: wrn_…
	MethodHost                     // X-Host-Token: <host JWT>
)

func (m Method) String() string {
	switch m {
	case MethodJWT:
		return "jwt"
	case MethodAPIKey:
		return "api_key"
	case MethodHost:
		return "host"
	default:
		return fmt.Sprintf("Method(%d)", int(m))
	}
}

// Identity is an authenticated caller.
type Identity struct {
	Method Method

	// User (MethodJWT), as re-read from the database on this request.
	UserID  string // usr-…
	Email   string
	Name    string
	IsAdmin bool // platform admin

	// TeamID is the team the caller acts for: the JWT's team_id while the user is still a member of it,
	// or the API key's team; "" when there is no team context (→ 403 no_team on team routes).
	TeamID string
	// Role is the user's current role in TeamID; "" for API keys, which belong to a team, not a user.
	Role Role

	// API key (MethodAPIKey).
	APIKeyID   string // key-…
	APIKeyName string

	// Host agent (MethodHost).
	HostID string // host-…
}

// Actor types of the audit log (docs/api.md).
const (
	ActorUser   = "user"
	ActorAPIKey = "api_key"
	ActorSystem = "system"
)

// Actor returns the audit-log actor of the caller (docs/api.md): type, id and display name.
func (id Identity) Actor() (actorType, actorID, actorName string) {
	switch id.Method {
	case MethodJWT:
		name := id.Name
		if name == "" {
			name = id.Email
		}
		return ActorUser, id.UserID, name
	case MethodAPIKey:
		return ActorAPIKey, id.APIKeyID, id.APIKeyName
	default:
		return ActorSystem, "", ""
	}
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity the auth middleware stored in ctx.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}
