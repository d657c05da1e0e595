// Package accounts owns users, teams, memberships and API keys in the control plane: signup,
// activation, login, password change and reset, profile, account deletion, switch-team, teams and
// members, user search, API keys, the admin user and team routes, and the bootstrap of the first admin.
package accounts

import (
	"context"
	"fmt"

	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Lookups implements auth.Users and auth.APIKeys over the store: what the authenticator re-reads on
// every request.
type Lookups struct{ Store *store.Store }

var (
	_ auth.Users   = Lookups{}
	_ auth.APIKeys = Lookups{}
)

// UserState returns the user's status, admin flag, name and its role in teamID (auth.Users).
func (l Lookups) UserState(ctx context.Context, userID, teamID string) (auth.UserState, error) {
	uid, err := ids.User.Parse(userID)
	if err != nil {
		return auth.UserState{}, auth.ErrNotFound
	}
	u, err := l.Store.GetUserByID(ctx, uid)
	if err != nil {
		if store.IsNotFound(err) {
			return auth.UserState{}, auth.ErrNotFound
		}
		return auth.UserState{}, fmt.Errorf("read user: %w", err)
	}
	st := auth.UserState{Status: u.Status, IsAdmin: u.IsAdmin, Email: u.Email, Name: u.Name, SessionVersion: u.SessionVersion}
	if teamID == "" {
		return st, nil
	}
	tid, err := ids.Team.Parse(teamID)
	if err != nil {
		return st, nil
	}
	m, err := l.Store.GetTeamMember(ctx, db.GetTeamMemberParams{TeamID: tid, UserID: uid})
	switch {
	case err == nil:
		st.Role = auth.Role(m.Role)
	case !store.IsNotFound(err):
		return auth.UserState{}, fmt.Errorf("read membership: %w", err)
	}
	return st, nil
}

// APIKeyByHash finds a live team's key by the SHA-256 hex of its secret and records its use
// (auth.APIKeys).
func (l Lookups) APIKeyByHash(ctx context.Context, hash string) (auth.APIKeyRecord, error) {
	k, err := l.Store.UseAPIKey(ctx, hash)
	if err != nil {
		if store.IsNotFound(err) {
			return auth.APIKeyRecord{}, auth.ErrNotFound
		}
		return auth.APIKeyRecord{}, fmt.Errorf("read api key: %w", err)
	}
	return auth.APIKeyRecord{ID: ids.APIKey.Format(k.ID), TeamID: ids.Team.Format(k.TeamID), Name: k.Name}, nil
}
