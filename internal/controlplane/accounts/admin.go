package accounts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// AdminTeam is one team of GET /v1/admin/teams.
type AdminTeam struct {
	ID                 string `json:"id"`
	Name               string `json:"name"`
	Slug               string `json:"slug"`
	IsBYOC             bool   `json:"is_byoc"`
	CreatedAt          string `json:"created_at"`
	DeletedAt          string `json:"deleted_at,omitempty"`
	MemberCount        int64  `json:"member_count"`
	OwnerName          string `json:"owner_name"`
	OwnerEmail         string `json:"owner_email"`
	ActiveSandboxCount int64  `json:"active_sandbox_count"`
	ChannelCount       int64  `json:"channel_count"`
}

// AdminUser is one user of GET /v1/admin/users.
type AdminUser struct {
	ID          string `json:"id"`
	Email       string `json:"email"`
	Name        string `json:"name"`
	IsAdmin     bool   `json:"is_admin"`
	Status      string `json:"status"`
	CreatedAt   string `json:"created_at"`
	TeamsJoined int64  `json:"teams_joined"`
	TeamsOwned  int64  `json:"teams_owned"`
}

// page is the pagination part of the admin listings.
type page struct {
	Total      int64 `json:"total"`
	Page       int   `json:"page"`
	PerPage    int   `json:"per_page"`
	TotalPages int64 `json:"total_pages"`
}

// pageOf reads ?page=N (from 1, default 1).
func pageOf(r *http.Request) (int, error) {
	raw := r.URL.Query().Get("page")
	if raw == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 1<<20 {
		return 0, apierr.InvalidRequestf("invalid page %q: must be an integer from 1", raw)
	}
	return n, nil
}

func newPage(n int, total int64) page {
	return page{Total: total, Page: n, PerPage: AdminPageSize, TotalPages: (total + AdminPageSize - 1) / AdminPageSize}
}

// AdminTeams is the answer of GET /v1/admin/teams.
type AdminTeams struct {
	Teams []AdminTeam `json:"teams"`
	page
}

// AdminUsers is the answer of GET /v1/admin/users.
type AdminUsers struct {
	Users []AdminUser `json:"users"`
	page
}

// GET /v1/admin/teams?page=N → {teams, total, page, per_page, total_pages}.
func (s *Service) handleAdminListTeams(w http.ResponseWriter, r *http.Request) {
	n, err := pageOf(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.adminListTeams(r.Context(), n)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// GET /v1/admin/users?page=N → {users, total, page, per_page, total_pages}.
func (s *Service) handleAdminListUsers(w http.ResponseWriter, r *http.Request) {
	n, err := pageOf(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.adminListUsers(r.Context(), n)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// adminListTeams returns page n of every team, deleted ones included.
func (s *Service) adminListTeams(ctx context.Context, n int) (AdminTeams, error) {
	total, err := s.st.CountTeams(ctx)
	if err != nil {
		return AdminTeams{}, internal("count teams", err)
	}
	rows, err := s.st.ListTeams(ctx, db.ListTeamsParams{Skip: int32((n - 1) * AdminPageSize), MaxResults: AdminPageSize})
	if err != nil {
		return AdminTeams{}, internal("list teams", err)
	}
	teams := make([]AdminTeam, 0, len(rows))
	for _, row := range rows {
		t := AdminTeam{
			ID: ids.Team.Format(row.Team.ID), Name: row.Team.Name, Slug: row.Team.Slug, IsBYOC: row.Team.IsBYOC,
			CreatedAt: rfc3339(row.Team.CreatedAt), MemberCount: row.MemberCount,
			ActiveSandboxCount: row.ActiveCapsuleCount, ChannelCount: row.ChannelCount,
		}
		if row.Team.DeletedAt != nil {
			t.DeletedAt = rfc3339(*row.Team.DeletedAt)
		}
		if row.OwnerName != nil {
			t.OwnerName = *row.OwnerName
		}
		if row.OwnerEmail != nil {
			t.OwnerEmail = *row.OwnerEmail
		}
		teams = append(teams, t)
	}
	return AdminTeams{Teams: teams, page: newPage(n, total)}, nil
}

// adminListUsers returns page n of every account.
func (s *Service) adminListUsers(ctx context.Context, n int) (AdminUsers, error) {
	total, err := s.st.CountUsers(ctx)
	if err != nil {
		return AdminUsers{}, internal("count users", err)
	}
	rows, err := s.st.ListUsers(ctx, db.ListUsersParams{Skip: int32((n - 1) * AdminPageSize), MaxResults: AdminPageSize})
	if err != nil {
		return AdminUsers{}, internal("list users", err)
	}
	users := make([]AdminUser, 0, len(rows))
	for _, row := range rows {
		u := row.User
		users = append(users, AdminUser{
			ID: ids.User.Format(u.ID), Email: u.Email, Name: u.Name, IsAdmin: u.IsAdmin, Status: u.Status,
			CreatedAt: rfc3339(u.CreatedAt), TeamsJoined: row.TeamsJoined, TeamsOwned: row.TeamsOwned,
		})
	}
	return AdminUsers{Users: users, page: newPage(n, total)}, nil
}

// adminTeam parses the {id} of an admin team route: 400 bad id.
func adminTeam(r *http.Request) (uuid.UUID, error) {
	team, err := ids.Team.Parse(r.PathValue("id"))
	if err != nil {
		return uuid.Nil, apierr.InvalidRequest("invalid team ID")
	}
	return team, nil
}

// PUT /v1/admin/teams/{id}/byoc {enabled} → 204; BYOC cannot be disabled once enabled.
func (s *Service) handleAdminSetBYOC(w http.ResponseWriter, r *http.Request) {
	team, err := adminTeam(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	var req struct {
		Enabled *bool `json:"enabled"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if req.Enabled == nil {
		apierr.Write(w, r, apierr.InvalidRequest("enabled is required"))
		return
	}
	if err := s.setBYOC(r.Context(), httpapi.Identity(r), team, *req.Enabled); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

// setBYOC makes team a BYOC team (enabled) or checks it is not one: BYOC cannot be disabled once
// enabled and the platform team cannot be a BYOC team.
func (s *Service) setBYOC(ctx context.Context, actor auth.Identity, team uuid.UUID, enabled bool) error {
	return s.st.Tx(ctx, func(q *db.Queries) error {
		t, err := q.GetTeam(ctx, team)
		if store.IsNotFound(err) {
			return apierr.NotFound("team not found")
		}
		if err != nil {
			return internal("read team", err)
		}
		switch {
		case t.IsBYOC == enabled:
			return nil
		case t.IsBYOC:
			return apierr.InvalidRequest("BYOC cannot be disabled once enabled")
		case team == store.PlatformTeamID:
			return apierr.InvalidRequest("the platform team runs on regular hosts and cannot be a BYOC team")
		}
		if _, err := q.SetTeamBYOC(ctx, db.SetTeamBYOCParams{IsBYOC: true, ID: team}); err != nil {
			return internal("enable BYOC", err)
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: actor, ResourceType: "team", ResourceID: ids.Team.Format(team),
			Action: "team.byoc_enable", Scope: audit.ScopeAdmin})
		return nil
	})
}

// DELETE /v1/admin/teams/{id} → 204: soft delete as docs/api.md; the platform team → 403.
func (s *Service) handleAdminDeleteTeam(w http.ResponseWriter, r *http.Request) {
	team, err := adminTeam(r)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	if err := s.deleteTeam(r.Context(), httpapi.Identity(r), team); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

// PUT /v1/admin/users/{id}/active {active} → 204.
func (s *Service) handleAdminSetUserActive(w http.ResponseWriter, r *http.Request) {
	uid, err := ids.User.Parse(r.PathValue("id"))
	if err != nil {
		apierr.Write(w, r, apierr.InvalidRequest("invalid user ID"))
		return
	}
	var req struct {
		Active *bool `json:"active"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	if req.Active == nil {
		apierr.Write(w, r, apierr.InvalidRequest("active is required"))
		return
	}
	if err := s.SetUserActive(r.Context(), httpapi.Identity(r), uid, *req.Active); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

// SetUserActive activates or deactivates an account on behalf of a platform admin. Deactivating sets
// the status disabled, deletes the API keys of the teams the user owns and every key the user created
// in other teams, and destroys the owned teams' capsules. Activating re-enables a disabled account, or activates a pending signup (with its default
// team). An admin cannot change its own account (400); deleted accounts are not found.
func (s *Service) SetUserActive(ctx context.Context, actor auth.Identity, user uuid.UUID, active bool) error {
	if actor.UserID == ids.User.Format(user) {
		return apierr.InvalidRequest("you cannot change the status of your own account")
	}
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		u, err := q.GetUserByID(ctx, user)
		if store.IsNotFound(err) || (err == nil && u.Status == store.UserDeleted) {
			return apierr.NotFound("user not found")
		}
		if err != nil {
			return internal("read user", err)
		}
		switch {
		case !active && u.Status != store.UserDisabled:
			if _, err := q.SetUserStatus(ctx, db.SetUserStatusParams{Status: store.UserDisabled, ID: user}); err != nil {
				return internal("disable user", err)
			}
		case active && u.Status == store.UserDisabled:
			if _, err := q.SetUserStatus(ctx, db.SetUserStatusParams{Status: store.UserActive, ID: user}); err != nil {
				return internal("enable user", err)
			}
		case active && u.Status == store.UserInactive:
			if _, err := activate(ctx, q, user); err != nil {
				return err
			}
		default:
			// Already in the requested state; a deactivation still cleans up below.
		}
		if !active {
			if _, err := q.DeleteAPIKeysOfTeamsOwnedBy(ctx, user); err != nil {
				return internal("delete API keys of owned teams", err)
			}
			if _, err := q.DeleteAPIKeysCreatedBy(ctx, &user); err != nil {
				return internal("revoke API keys the user created", err)
			}
		}
		action := "user.activate"
		if !active {
			action = "user.deactivate"
		}
		audit.Record(ctx, q, audit.Entry{Team: store.PlatformTeamID, Actor: actor, ResourceType: "user", ResourceID: ids.User.Format(user),
			Action: action, Scope: audit.ScopeAdmin, Metadata: map[string]any{"email": u.Email}})
		return nil
	})
	if err != nil || active {
		return err
	}
	teams, err := s.st.ListOwnedTeamIDs(ctx, user)
	if err != nil {
		return internal("list owned teams", err)
	}
	var errs []error
	for _, team := range teams {
		if err := s.capsules.DestroyTeamCapsules(ctx, team); err != nil {
			errs = append(errs, fmt.Errorf("destroy capsules of team %s: %w", ids.Team.Format(team), err))
		}
	}
	return errors.Join(errs...)
}
