package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ratelimit"
)

// Kind is the authentication a route requires (docs/api.md).
type Kind int

const (
	KindJWT      Kind = iota + 1 // user JWT
	KindKeyOrJWT                 // X-API-Key (checked first) or user JWT, with a team context
	KindAdmin                    // user JWT of a platform admin; handlers act on the platform team
	KindHost                     // X-Host-Token
)

func (k Kind) String() string {
	switch k {
	case KindJWT:
		return "JWT"
	case KindKeyOrJWT:
		return "KEY|JWT"
	case KindAdmin:
		return "ADMIN"
	case KindHost:
		return "HOST"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// User statuses (docs/api.md). Only active users authenticate with a JWT.
const (
	UserInactive = "inactive"
	UserActive   = "active"
	UserDisabled = "disabled"
	UserDeleted  = "deleted"
)

// ErrNotFound is returned by Users and APIKeys when the record does not exist.
var ErrNotFound = errors.New("not found")

// UserState is what is re-read about a JWT's user on every request.
type UserState struct {
	Status  string // UserActive, …
	IsAdmin bool
	Email   string
	Name    string
	// Role is the user's current role in the team asked about; "" when the team is "", deleted, or the
	// user is no longer a member of it.
	Role Role
	// SessionVersion is the user's current session version: tokens of another version are refused.
	SessionVersion int32
}

// Users reads user state for JWT checks.
type Users interface {
	// UserState returns the current state of userID and its role in teamID ("" = no team); ErrNotFound
	// when there is no such user.
	UserState(ctx context.Context, userID, teamID string) (UserState, error)
}

// UsersFunc adapts a function to Users.
type UsersFunc func(ctx context.Context, userID, teamID string) (UserState, error)

// UserState calls f.
func (f UsersFunc) UserState(ctx context.Context, userID, teamID string) (UserState, error) {
	return f(ctx, userID, teamID)
}

// APIKeyRecord is the stored side of an API key.
type APIKeyRecord struct {
	ID     string // key-…
	TeamID string // team-…
	Name   string
}

// APIKeys finds API keys for KEY|JWT checks.
type APIKeys interface {
	// APIKeyByHash returns the key whose secret has SHA-256 hex hash (of a live team) and records its use
	// (last_used); ErrNotFound when there is none.
	APIKeyByHash(ctx context.Context, hash string) (APIKeyRecord, error)
}

// APIKeysFunc adapts a function to APIKeys.
type APIKeysFunc func(ctx context.Context, hash string) (APIKeyRecord, error)

// APIKeyByHash calls f.
func (f APIKeysFunc) APIKeyByHash(ctx context.Context, hash string) (APIKeyRecord, error) {
	return f(ctx, hash)
}

// Credentials are the authentication headers of a request (or the token of a WebSocket auth message).
type Credentials struct {
	APIKey        string // X-API-Key
	Authorization string // Authorization, whole ("Bearer <jwt>")
	HostToken     string // X-Host-Token
}

// CredentialsFrom reads the authentication headers of r.
func CredentialsFrom(r *http.Request) Credentials {
	return Credentials{
		APIKey:        strings.TrimSpace(r.Header.Get("X-API-Key")),
		Authorization: strings.TrimSpace(r.Header.Get("Authorization")),
		HostToken:     strings.TrimSpace(r.Header.Get("X-Host-Token")),
	}
}

// Empty reports whether no credential header was sent.
func (c Credentials) Empty() bool {
	return c.APIKey == "" && c.Authorization == "" && c.HostToken == ""
}

// bearer extracts the token of an "Authorization: Bearer <token>" value (scheme case-insensitive).
func (c Credentials) bearer() (string, error) {
	scheme, tok, ok := strings.Cut(c.Authorization, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", apierr.Unauthorized("Authorization header must be 'Bearer <token>'")
	}
	return tok, nil
}

// Messages of the 401/403 answers.
const (
	msgMissing         = "missing credentials: send Authorization: Bearer <token> or X-API-Key"
	msgMissingJWT      = "missing credentials: send Authorization: Bearer <token>"
	msgKeyNotAllowed   = "API keys work only on /v1/capsules, /v1/sandboxes and /v1/snapshots; this route needs Authorization: Bearer <token>"
	msgInvalidKey      = "invalid API key"
	msgInvalidToken    = "invalid or expired token"
	msgMissingHost     = "missing X-Host-Token header"
	msgInvalidHost     = "invalid or expired host token"
	msgDeactivated     = "account is not active"
	msgNoTeam          = "no team context: use POST /v1/auth/switch-team to pick a team"
	msgAdminRequired   = "admin access required"
	msgUnknownAuthKind = "unknown authentication kind"
)

// apiKeyPrefixes are the paths API keys work on: /v1/capsules*, /v1/sandboxes* and /v1/snapshots*
// (docs/api.md), and the E2B-compatible API's roots (docs/e2b.md).
var apiKeyPrefixes = []string{"/v1/capsules", "/v1/sandboxes", "/v1/snapshots",
	"/sandboxes", "/v2/sandboxes", "/snapshots", "/templates", "/v2/templates", "/v3/templates",
	"/volumes", "/volumecontent", "/secrets"}

// APIKeyAllowed reports whether an API key may be used on path (apiKeyPrefixes).
func APIKeyAllowed(path string) bool {
	for _, p := range apiKeyPrefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// Authenticator checks credentials against the signer and the database lookups.
type Authenticator struct {
	signer *Signer
	users  Users
	keys   APIKeys

	wsTimeout   time.Duration      // FirstMessageTimeout unless a test shortens it
	keyFailures *ratelimit.Limiter // failed API-key authentications per client IP; nil: unlimited
	recheck     time.Duration      // RecheckInterval unless SetRecheckInterval changed it
}

// NewAuthenticator returns an Authenticator. users is needed for JWT kinds, keys for KEY|JWT. Failed
// API-key authentications are limited per client IP with DefaultKeyFailureLimit (see
// LimitKeyFailures).
func NewAuthenticator(signer *Signer, users Users, keys APIKeys) *Authenticator {
	return &Authenticator{signer: signer, users: users, keys: keys, keyFailures: ratelimit.New(DefaultKeyFailureLimit, 0)}
}

// Authenticate checks c for a route of kind at path. Errors are *apierr.Error: 401 unauthorized for
// missing or invalid credentials, 403 account_deactivated, no_team (KEY|JWT without a team) or
// forbidden (ADMIN for a non-admin), 429 rate_limited when the client (WithClientIP) failed too many
// API-key authentications, 500 internal_error when a lookup fails.
func (a *Authenticator) Authenticate(ctx context.Context, kind Kind, path string, c Credentials) (Identity, error) {
	switch kind {
	case KindHost:
		return a.host(c)
	case KindKeyOrJWT:
		var (
			id  Identity
			err error
		)
		switch {
		case c.APIKey != "":
			if !APIKeyAllowed(path) {
				return Identity{}, apierr.Unauthorized(msgKeyNotAllowed)
			}
			if err := a.checkKeyLimit(ctx); err != nil {
				return Identity{}, err
			}
			if id, err = a.apiKey(ctx, c.APIKey); err != nil && apierr.From(err).Status == http.StatusUnauthorized {
				a.keyFailed(ctx)
			}
		case c.Authorization != "":
			id, err = a.user(ctx, c)
		default:
			return Identity{}, apierr.Unauthorized(msgMissing)
		}
		if err != nil {
			return Identity{}, err
		}
		if id.TeamID == "" {
			return Identity{}, apierr.NoTeam(msgNoTeam)
		}
		return id, nil
	case KindJWT, KindAdmin:
		if c.Authorization == "" {
			if c.APIKey != "" {
				return Identity{}, apierr.Unauthorized(msgKeyNotAllowed)
			}
			return Identity{}, apierr.Unauthorized(msgMissingJWT)
		}
		id, err := a.user(ctx, c)
		if err != nil {
			return Identity{}, err
		}
		if kind == KindAdmin && !id.IsAdmin {
			return Identity{}, apierr.Forbidden(msgAdminRequired)
		}
		return id, nil
	default:
		return Identity{}, apierr.Internal(fmt.Errorf("%s: %v", msgUnknownAuthKind, kind))
	}
}

// user checks a Bearer JWT and re-reads its user: the user must exist and be active; the team and role
// come from the database, so a removed member loses the team at once.
func (a *Authenticator) user(ctx context.Context, c Credentials) (Identity, error) {
	tok, err := c.bearer()
	if err != nil {
		return Identity{}, err
	}
	claims, err := a.signer.ParseUser(tok)
	if err != nil {
		return Identity{}, apierr.Unauthorized(msgInvalidToken).WithCause(err)
	}
	st, err := a.users.UserState(ctx, claims.UserID, claims.TeamID)
	switch {
	case errors.Is(err, ErrNotFound):
		return Identity{}, apierr.Unauthorized(msgInvalidToken).WithCause(err)
	case err != nil:
		return Identity{}, apierr.Internal(fmt.Errorf("read user %s: %w", claims.UserID, err))
	case claims.SessionVersion != st.SessionVersion:
		return Identity{}, apierr.Unauthorized(msgInvalidToken).WithCause(errors.New("session ended (password changed)"))
	case st.Status != UserActive:
		return Identity{}, apierr.AccountDeactivated(msgDeactivated)
	}
	id := Identity{Method: MethodJWT, UserID: claims.UserID, Email: st.Email, Name: st.Name, IsAdmin: st.IsAdmin}
	if claims.TeamID != "" && st.Role.Valid() {
		id.TeamID, id.Role = claims.TeamID, st.Role
	}
	return id, nil
}

// apiKey checks an X-API-Key value.
func (a *Authenticator) apiKey(ctx context.Context, secret string) (Identity, error) {
	if !IsAPIKey(secret) {
		return Identity{}, apierr.Unauthorized(msgInvalidKey)
	}
	rec, err := a.keys.APIKeyByHash(ctx, HashSecret(secret))
	switch {
	case errors.Is(err, ErrNotFound):
		return Identity{}, apierr.Unauthorized(msgInvalidKey)
	case err != nil:
		return Identity{}, apierr.Internal(fmt.Errorf("look up API key: %w", err))
	}
	return Identity{Method: MethodAPIKey, TeamID: rec.TeamID, APIKeyID: rec.ID, APIKeyName: rec.Name}, nil
}

// host checks an X-Host-Token value.
func (a *Authenticator) host(c Credentials) (Identity, error) {
	if c.HostToken == "" {
		return Identity{}, apierr.Unauthorized(msgMissingHost)
	}
	claims, err := a.signer.ParseHost(c.HostToken)
	if err != nil {
		return Identity{}, apierr.Unauthorized(msgInvalidHost).WithCause(err)
	}
	return Identity{Method: MethodHost, HostID: claims.HostID}, nil
}

// Middleware returns HTTP middleware that authenticates every request for kind, answers failures with
// docs/api.md error body, and passes the Identity on in the request context (FromContext).
func (a *Authenticator) Middleware(kind Kind) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := a.Authenticate(r.Context(), kind, r.URL.Path, CredentialsFrom(r))
			if err != nil {
				apierr.Write(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
		})
	}
}
