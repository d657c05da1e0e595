package accounts

import (
	"context"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Me is the answer of GET /v1/me.
type Me struct {
	Name        string   `json:"name"`
	Email       string   `json:"email"`
	HasPassword bool     `json:"has_password"`
	Providers   []string `json:"providers"`
}

// GET /v1/me.
func (s *Service) handleGetMe(w http.ResponseWriter, r *http.Request) {
	me, err := s.me(r.Context(), httpapi.Identity(r))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, me)
}

// PATCH /v1/me {name} → 200 AuthResponse with a fresh JWT (same team).
func (s *Service) handlePatchMe(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name *string `json:"name"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if req.Name == nil {
		apierr.Write(w, r, apierr.InvalidRequest("name is required"))
		return
	}
	name, err := checkName(*req.Name)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	res, err := s.renameMe(r.Context(), httpapi.Identity(r), name)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
}

// PasswordChange is the body of POST /v1/me/password.
type PasswordChange struct {
	CurrentPassword *string `json:"current_password"`
	NewPassword     string  `json:"new_password"`
	ConfirmPassword *string `json:"confirm_password"`
}

// POST /v1/me/password {current_password?, new_password, confirm_password?} → 204.
func (s *Service) handleChangePassword(w http.ResponseWriter, r *http.Request) {
	var req PasswordChange
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	res, err := s.changePassword(r.Context(), httpapi.Identity(r), req)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, res)
}

// DELETE /v1/me/providers/{provider} → 204: unlinks an OAuth sign-in method.
func (s *Service) handleUnlinkProvider(w http.ResponseWriter, r *http.Request) {
	if err := s.unlinkProvider(r.Context(), httpapi.Identity(r), r.PathValue("provider")); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

func (s *Service) me(ctx context.Context, caller auth.Identity) (Me, error) {
	u, err := s.userOf(ctx, caller)
	if err != nil {
		return Me{}, err
	}
	idents, err := s.st.ListUserIdentities(ctx, u.ID)
	if err != nil {
		return Me{}, internal("list identities", err)
	}
	me := Me{Name: u.Name, Email: u.Email, HasPassword: u.PasswordHash != nil, Providers: make([]string, 0, len(idents))}
	for _, i := range idents {
		me.Providers = append(me.Providers, i.Provider)
	}
	return me, nil
}

// renameMe renames the caller and issues a fresh JWT for the same team.
func (s *Service) renameMe(ctx context.Context, caller auth.Identity, name string) (AuthResponse, error) {
	u, err := s.userOf(ctx, caller)
	if err != nil {
		return AuthResponse{}, err
	}
	u, err = s.st.SetUserName(ctx, db.SetUserNameParams{Name: name, ID: u.ID})
	if err != nil {
		return AuthResponse{}, internal("rename user", err)
	}
	// Same team as the current token (none when it has none).
	team, _ := ids.Team.Parse(caller.TeamID)
	role := ""
	if caller.TeamID != "" && caller.Role.Valid() {
		role = string(caller.Role)
	}
	return s.issue(u, team, role)
}

// changePassword sets the caller's password; an account that has one must give it.
func (s *Service) changePassword(ctx context.Context, caller auth.Identity, req PasswordChange) (AuthResponse, error) {
	u, err := s.userOf(ctx, caller)
	if err != nil {
		return AuthResponse{}, err
	}
	switch {
	case req.NewPassword == "":
		err = apierr.InvalidRequest("new_password is required")
	case req.ConfirmPassword != nil && *req.ConfirmPassword != req.NewPassword:
		err = apierr.InvalidRequest("confirm_password does not match new_password")
	case u.PasswordHash != nil && (req.CurrentPassword == nil || *req.CurrentPassword == ""):
		err = apierr.InvalidRequest("current_password is required")
	default:
		err = auth.ValidatePassword(req.NewPassword)
	}
	if err != nil {
		return AuthResponse{}, err
	}
	if u.PasswordHash != nil && !auth.CheckPassword(*u.PasswordHash, *req.CurrentPassword) {
		return AuthResponse{}, apierr.WrongPassword("current password is incorrect")
	}
	hash, err := auth.HashPassword(req.NewPassword)
	if err != nil {
		return AuthResponse{}, err
	}
	var res AuthResponse
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		if _, err := q.SetUserPassword(ctx, db.SetUserPasswordParams{PasswordHash: hash, ID: u.ID}); err != nil {
			return internal("set password", err)
		}
		// Every other session ends; this one continues with the token of the answer.
		if u, err = q.EndUserSessions(ctx, u.ID); err != nil {
			return internal("end sessions", err)
		}
		team, terr := ids.Team.Parse(caller.TeamID)
		if caller.TeamID == "" || terr != nil {
			res, err = s.issue(u, uuid.Nil, "")
		} else {
			res, err = s.issue(u, team, string(caller.Role))
		}
		return err
	})
	return res, err
}

// unlinkProvider unlinks an OAuth sign-in method of the caller unless it is the only way to sign in.
func (s *Service) unlinkProvider(ctx context.Context, caller auth.Identity, provider string) error {
	u, err := s.userOf(ctx, caller)
	if err != nil {
		return err
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		idents, err := q.ListUserIdentities(ctx, u.ID)
		if err != nil {
			return internal("list identities", err)
		}
		linked := false
		for _, i := range idents {
			linked = linked || i.Provider == provider
		}
		switch {
		case !linked:
			return apierr.NotFound("provider " + provider + " is not linked to your account")
		case u.PasswordHash == nil && len(idents) == 1:
			return apierr.LastLoginMethod("this is your only way to sign in: set a password first")
		}
		if _, err := q.DeleteUserIdentity(ctx, db.DeleteUserIdentityParams{UserID: u.ID, Provider: provider}); err != nil {
			return internal("unlink provider", err)
		}
		return nil
	})
}

// DELETE /v1/me {confirmation: own email} → 204.
func (s *Service) handleDeleteMe(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Confirmation string `json:"confirmation"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	id := httpapi.Identity(r)
	u, err := s.userOf(r.Context(), id)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	if !strings.EqualFold(strings.TrimSpace(req.Confirmation), u.Email) {
		apierr.Write(w, r, apierr.InvalidRequest("confirmation must be your email address"))
		return
	}
	if err := s.deleteAccount(r.Context(), id, u); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

// deleteAccount soft-deletes u (purged after DeletedUserRetention): refused while u owns a team with
// other members; the teams it owns alone are deleted (docs/api.md) and it leaves the others.
func (s *Service) deleteAccount(ctx context.Context, actor auth.Identity, u db.User) error {
	if err := s.checkNotLastAdmin(ctx, s.st.Queries, u); err != nil {
		return err
	}
	busy, err := s.st.UserOwnsTeamWithMembers(ctx, u.ID)
	if err != nil {
		return internal("check owned teams", err)
	}
	if busy {
		return apierr.OwnsTeamWithMembers("you own a team with other members: remove them or delete the team first")
	}
	sole, err := s.st.ListSoleOwnedTeamIDs(ctx, u.ID)
	if err != nil {
		return internal("list owned teams", err)
	}
	for _, team := range sole {
		if err := s.deleteTeam(ctx, actor, team); err != nil && !isNotFound(err) {
			return err
		}
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		// A member added to one of its teams meanwhile keeps the account from being deleted.
		busy, err := q.UserOwnsTeamWithMembers(ctx, u.ID)
		if err != nil {
			return internal("check owned teams", err)
		}
		if busy {
			return apierr.OwnsTeamWithMembers("you own a team with other members: remove them or delete the team first")
		}
		if err := s.checkNotLastAdmin(ctx, q, u); err != nil {
			return err
		}
		if _, err := q.RemoveUserMemberships(ctx, u.ID); err != nil {
			return internal("leave teams", err)
		}
		if _, err := q.DeleteAPIKeysCreatedBy(ctx, &u.ID); err != nil {
			return internal("revoke API keys", err)
		}
		for _, kind := range []string{store.TokenActivation, store.TokenPasswordReset} {
			if _, err := q.DeleteUnusedOneTimeTokens(ctx, db.DeleteUnusedOneTimeTokensParams{UserID: u.ID, Kind: kind}); err != nil {
				return internal("delete tokens", err)
			}
		}
		if _, err := q.SetUserStatus(ctx, db.SetUserStatusParams{Status: store.UserDeleted, ID: u.ID}); err != nil {
			return internal("delete user", err)
		}
		return nil
	})
}

// checkNotLastAdmin refuses (409 conflict) to delete the last active platform admin: the platform
// would have nobody left to administer it.
func (s *Service) checkNotLastAdmin(ctx context.Context, q *db.Queries, u db.User) error {
	if !u.IsAdmin {
		return nil
	}
	n, err := q.CountActiveAdmins(ctx)
	if err != nil {
		return internal("count admins", err)
	}
	if n <= 1 {
		return apierr.Conflict("you are the last platform admin: bootstrap another admin (wrenn-cp bootstrap) first")
	}
	return nil
}

// isNotFound reports whether err is a 404 API error.
func isNotFound(err error) bool { return apierr.From(err).Code == apierr.CodeNotFound }
