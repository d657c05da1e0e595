package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/mail"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// CapsuleDestroyer tears down a team's capsules and templates (implemented by the capsules service):
// every live capsule is destroyed and recorded stopped, every template removed from its hosts.
type CapsuleDestroyer interface {
	DestroyTeamCapsules(ctx context.Context, team uuid.UUID) error
	// DeleteTeamTemplates removes the team's templates from every host and then their rows.
	DeleteTeamTemplates(ctx context.Context, team uuid.UUID) error
}

// Lifetimes and limits of docs/api.md.
const (
	// SignupCooldown is how long an inactive signup blocks a new signup with the same email.
	SignupCooldown = 30 * time.Minute
	// DeletedUserRetention is how long a deleted account's row is kept before it is purged.
	DeletedUserRetention = 15 * 24 * time.Hour
	// DefaultPurgeInterval is how often Run purges deleted users and expired one-time tokens.
	DefaultPurgeInterval = time.Hour
	// AdminPageSize is per_page of the admin listings.
	AdminPageSize = 100
	// mailTimeout bounds the delivery of a password-reset mail sent in the background.
	mailTimeout = 2 * time.Minute
)

// Config holds the dependencies of a Service.
type Config struct {
	Store  *store.Store
	Signer *auth.Signer
	// Mailer delivers activation and password-reset mails; nil = mail.NewLog(Log) (development).
	Mailer mail.Mailer
	// DashboardURL is the base of the links in mails ({DashboardURL}/activate?token=…).
	DashboardURL string
	Log          *slog.Logger
	// Capsules destroys the capsules of deleted teams and of teams owned by deactivated users.
	Capsules CapsuleDestroyer
	// PurgeInterval is how often Run purges; 0 = DefaultPurgeInterval.
	PurgeInterval time.Duration
	// RateLimits of login, signup, activation and password reset; zero Limits are DefaultRateLimits'.
	RateLimits RateLimits

	// Providers are the OAuth sign-in providers (NewGitHub); none: the OAuth routes are not served.
	Providers []Provider
	// OAuthKey signs the OAuth state and link cookies (docs/security.md); required with Providers.
	OAuthKey []byte
	// PublicURL is the API's external base URL: providers return to
	// {PublicURL}/auth/oauth/{provider}/callback. "" = DashboardURL (the dashboard and the API share
	// one origin by default).
	PublicURL string
}

// Service is the accounts area: the handlers of docs/api.md and the admin team and user routes of docs/api.md,
// and the purge of deleted users and expired tokens.
type Service struct {
	st            *store.Store
	signer        *auth.Signer
	mailer        mail.Mailer
	dashboard     string
	log           *slog.Logger
	capsules      CapsuleDestroyer
	purgeInterval time.Duration
	limits        limiters

	providers     map[string]Provider
	oauthKey      []byte
	publicURL     string
	secureCookies bool // the OAuth cookies are Secure when PublicURL is https

	mails sync.WaitGroup // password-reset mails in flight
}

// New returns a Service; Store, Signer, Capsules and an absolute http(s) DashboardURL are required.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("accounts: Config.Store is required")
	case cfg.Signer == nil:
		return nil, errors.New("accounts: Config.Signer is required")
	case cfg.Capsules == nil:
		return nil, errors.New("accounts: Config.Capsules is required")
	}
	u, err := url.Parse(cfg.DashboardURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("accounts: Config.DashboardURL %q must be an absolute http(s) URL (the base of links in mails)", cfg.DashboardURL)
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = cfg.DashboardURL
	} else if err := checkAbsURL(cfg.PublicURL); err != nil {
		return nil, fmt.Errorf("accounts: Config.PublicURL: %w", err)
	}
	providers := make(map[string]Provider, len(cfg.Providers))
	for _, p := range cfg.Providers {
		if _, dup := providers[p.Name()]; dup {
			return nil, fmt.Errorf("accounts: OAuth provider %s configured twice", p.Name())
		}
		providers[p.Name()] = p
	}
	if len(providers) > 0 && len(cfg.OAuthKey) < 32 {
		return nil, errors.New("accounts: Config.OAuthKey (≥ 32 bytes) is required with OAuth providers")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Mailer == nil {
		cfg.Mailer = mail.NewLog(cfg.Log)
	}
	if cfg.PurgeInterval <= 0 {
		cfg.PurgeInterval = DefaultPurgeInterval
	}
	return &Service{
		st:            cfg.Store,
		signer:        cfg.Signer,
		mailer:        cfg.Mailer,
		dashboard:     strings.TrimRight(cfg.DashboardURL, "/"),
		log:           cfg.Log,
		capsules:      cfg.Capsules,
		purgeInterval: cfg.PurgeInterval,
		limits:        newLimiters(cfg.RateLimits),
		providers:     providers,
		oauthKey:      cfg.OAuthKey,
		publicURL:     strings.TrimRight(cfg.PublicURL, "/"),
		secureCookies: strings.HasPrefix(cfg.PublicURL, "https:"),
	}, nil
}

// Register adds every route of the accounts area to rt; the OAuth routes only when a provider is
// configured.
func (s *Service) Register(rt *httpapi.Router) {
	const (
		none  = httpapi.KindNone
		jwt   = auth.KindJWT
		admin = auth.KindAdmin
	)
	// docs/api.md accounts and authentication.
	rt.Handle(http.MethodPost, "/v1/auth/signup", none, s.handleSignup)
	rt.Handle(http.MethodPost, "/v1/auth/activate", none, s.handleActivate)
	rt.Handle(http.MethodPost, "/v1/auth/login", none, s.handleLogin)
	rt.Handle(http.MethodPost, "/v1/auth/switch-team", jwt, s.handleSwitchTeam)
	rt.Handle(http.MethodGet, "/v1/me", jwt, s.handleGetMe)
	rt.Handle(http.MethodPatch, "/v1/me", jwt, s.handlePatchMe)
	rt.Handle(http.MethodDelete, "/v1/me", jwt, s.handleDeleteMe)
	rt.Handle(http.MethodPost, "/v1/me/password", jwt, s.handleChangePassword)
	rt.Handle(http.MethodPost, "/v1/me/password/reset", none, s.handleResetPassword)
	rt.Handle(http.MethodPost, "/v1/me/password/reset/confirm", none, s.handleResetPasswordConfirm)
	rt.Handle(http.MethodDelete, "/v1/me/providers/{provider}", jwt, s.handleUnlinkProvider)
	if len(s.providers) > 0 {
		rt.Handle(http.MethodGet, "/v1/me/providers/{provider}/connect", jwt, httpapi.Errors(s.handleConnectProvider))
	}
	s.registerOAuth(rt)

	// docs/api.md API keys.
	rt.Handle(http.MethodPost, "/v1/api-keys", jwt, s.handleCreateAPIKey)
	rt.Handle(http.MethodGet, "/v1/api-keys", jwt, s.handleListAPIKeys)
	rt.Handle(http.MethodDelete, "/v1/api-keys/{id}", jwt, s.handleDeleteAPIKey)

	// docs/api.md teams, members, user search.
	rt.Handle(http.MethodGet, "/v1/teams", jwt, s.handleListTeams)
	rt.Handle(http.MethodPost, "/v1/teams", jwt, s.handleCreateTeam)
	rt.Handle(http.MethodGet, "/v1/teams/{id}", jwt, s.handleGetTeam)
	rt.Handle(http.MethodPatch, "/v1/teams/{id}", jwt, s.handleRenameTeam)
	rt.Handle(http.MethodDelete, "/v1/teams/{id}", jwt, s.handleDeleteTeam)
	rt.Handle(http.MethodGet, "/v1/teams/{id}/members", jwt, httpapi.Errors(s.handleListMembers))
	rt.Handle(http.MethodPost, "/v1/teams/{id}/members", jwt, httpapi.Errors(s.handleAddMember))
	rt.Handle(http.MethodPatch, "/v1/teams/{id}/members/{uid}", jwt, httpapi.Errors(s.handleSetMemberRole))
	rt.Handle(http.MethodDelete, "/v1/teams/{id}/members/{uid}", jwt, httpapi.Errors(s.handleRemoveMember))
	rt.Handle(http.MethodPost, "/v1/teams/{id}/leave", jwt, httpapi.Errors(s.handleLeaveTeam))
	rt.Handle(http.MethodGet, "/v1/users/search", jwt, s.handleSearchUsers)

	// docs/api.md administration: teams and users.
	rt.Handle(http.MethodGet, "/v1/admin/teams", admin, s.handleAdminListTeams)
	rt.Handle(http.MethodPut, "/v1/admin/teams/{id}/byoc", admin, s.handleAdminSetBYOC)
	rt.Handle(http.MethodDelete, "/v1/admin/teams/{id}", admin, s.handleAdminDeleteTeam)
	rt.Handle(http.MethodGet, "/v1/admin/users", admin, s.handleAdminListUsers)
	rt.Handle(http.MethodPut, "/v1/admin/users/{id}/active", admin, s.handleAdminSetUserActive)
}

// Run purges deleted users older than DeletedUserRetention and expired one-time tokens, at start and
// then every PurgeInterval, until ctx ends; it then waits for password-reset mails in flight.
func (s *Service) Run(ctx context.Context) error {
	defer s.mails.Wait()
	t := time.NewTicker(s.purgeInterval)
	defer t.Stop()
	for {
		if err := s.Purge(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("purge accounts", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Purge deletes the rows of users deleted more than DeletedUserRetention ago and the expired one-time
// tokens, once.
func (s *Service) Purge(ctx context.Context) error {
	now := time.Now()
	users, err := s.st.PurgeDeletedUsers(ctx, now.Add(-DeletedUserRetention))
	if err != nil {
		return fmt.Errorf("purge deleted users: %w", err)
	}
	tokens, err := s.st.DeleteExpiredOneTimeTokens(ctx, now)
	if err != nil {
		return fmt.Errorf("delete expired one-time tokens: %w", err)
	}
	if users > 0 || tokens > 0 {
		s.log.Info("purged accounts", "deleted_users", users, "expired_tokens", tokens)
	}
	return nil
}

// AuthResponse is the answer of signup activation, login, switch-team and PATCH /v1/me (docs/api.md).
type AuthResponse struct {
	Token  string `json:"token"`
	UserID string `json:"user_id"`
	TeamID string `json:"team_id"`
	Email  string `json:"email"`
	Name   string `json:"name"`
}

// issue signs a user JWT for u in team with role; role "" = no team.
func (s *Service) issue(u db.User, team uuid.UUID, role string) (AuthResponse, error) {
	c := auth.UserClaims{UserID: ids.User.Format(u.ID), Email: u.Email, Name: u.Name, IsAdmin: u.IsAdmin, SessionVersion: u.SessionVersion}
	if role != "" {
		c.TeamID, c.Role = ids.Team.Format(team), auth.Role(role)
	}
	tok, _, err := s.signer.IssueUser(c)
	if err != nil {
		return AuthResponse{}, apierr.Internal(err)
	}
	return AuthResponse{Token: tok, UserID: c.UserID, TeamID: c.TeamID, Email: u.Email, Name: u.Name}, nil
}

// issueDefault signs a user JWT for u in the team a login lands in (its own team first), or without a
// team when it has none.
func (s *Service) issueDefault(ctx context.Context, q *db.Queries, u db.User) (AuthResponse, error) {
	row, err := q.GetDefaultTeamForUser(ctx, u.ID)
	switch {
	case store.IsNotFound(err):
		return s.issue(u, uuid.Nil, "")
	case err != nil:
		return AuthResponse{}, internal("read default team", err)
	}
	return s.issue(u, row.Team.ID, row.Role)
}

// userOf returns the user of an authenticated identity.
func (s *Service) userOf(ctx context.Context, id auth.Identity) (db.User, error) {
	uid, err := ids.User.Parse(id.UserID)
	if err != nil {
		return db.User{}, apierr.Unauthorized("invalid or expired token")
	}
	u, err := s.st.GetUserByID(ctx, uid)
	if store.IsNotFound(err) {
		return db.User{}, apierr.Unauthorized("invalid or expired token")
	}
	if err != nil {
		return db.User{}, internal("read user", err)
	}
	return u, nil
}

// teamOf returns the team the caller acts for: 403 no_team without one.
func teamOf(id auth.Identity) (uuid.UUID, error) {
	u, err := ids.Team.Parse(id.TeamID)
	if id.TeamID == "" || err != nil {
		return uuid.Nil, apierr.NoTeam("no team selected: create a team or switch to one with POST /v1/auth/switch-team")
	}
	return u, nil
}

// pathTeam checks the {id} of a /v1/teams/{id} route: a team id (400) that is the caller's current team
// (403: the JWT is scoped to one team at a time).
func pathTeam(r *http.Request, id auth.Identity) (uuid.UUID, error) {
	team, err := ids.Team.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, apierr.InvalidRequest("invalid team ID")
	}
	if id.TeamID == "" || ids.Team.Format(team) != id.TeamID {
		return uuid.Nil, apierr.Forbidden("your token is scoped to another team: use POST /v1/auth/switch-team first")
	}
	return team, nil
}

// internal is a 500 whose cause is what failed.
func internal(what string, err error) *apierr.Error {
	return apierr.Internal(fmt.Errorf("%s: %w", what, err))
}

// rfc3339 formats t for responses: RFC 3339 in UTC.
func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
