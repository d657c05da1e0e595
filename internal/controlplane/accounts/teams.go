package accounts

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/audit"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Team is the Team object of docs/api.md; Role is the caller's role in it.
type Team struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Slug      string `json:"slug"`
	IsBYOC    bool   `json:"is_byoc"`
	CreatedAt string `json:"created_at"`
	Role      string `json:"role"`
}

// Member is the Member object of docs/api.md.
type Member struct {
	UserID   string `json:"user_id"`
	Name     string `json:"name"`
	Email    string `json:"email"`
	Role     string `json:"role"`
	JoinedAt string `json:"joined_at"`
}

func teamJSON(t db.Team, role string) Team {
	return Team{ID: ids.Team.Format(t.ID), Name: t.Name, Slug: t.Slug, IsBYOC: t.IsBYOC, CreatedAt: rfc3339(t.CreatedAt), Role: role}
}

func memberJSON(m db.ListTeamMembersRow) Member {
	return Member{UserID: ids.User.Format(m.UserID), Name: m.Name, Email: m.Email, Role: m.Role, JoinedAt: rfc3339(m.JoinedAt)}
}

// GET /v1/teams → [Team].
func (s *Service) handleListTeams(w http.ResponseWriter, r *http.Request) {
	out, err := s.listTeams(r.Context(), httpapi.Identity(r))
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// POST /v1/teams {name} → 201 Team (caller = owner).
func (s *Service) handleCreateTeam(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	name, err := checkTeamName(req.Name)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	t, err := s.createTeam(r.Context(), httpapi.Identity(r), name)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, t)
}

// GET /v1/teams/{id} → {team, members}.
func (s *Service) handleGetTeam(w http.ResponseWriter, r *http.Request) {
	id := httpapi.Identity(r)
	team, err := pathTeam(r, id)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	out, err := s.getTeam(r.Context(), id, team)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

// TeamDetail is the answer of GET /v1/teams/{id}.
type TeamDetail struct {
	Team    Team     `json:"team"`
	Members []Member `json:"members"`
}

func (s *Service) listTeams(ctx context.Context, caller auth.Identity) ([]Team, error) {
	u, err := s.userOf(ctx, caller)
	if err != nil {
		return nil, err
	}
	rows, err := s.st.ListTeamsForUser(ctx, u.ID)
	if err != nil {
		return nil, internal("list teams", err)
	}
	out := make([]Team, 0, len(rows))
	for _, row := range rows {
		out = append(out, teamJSON(row.Team, row.Role))
	}
	return out, nil
}

// createTeam creates a team owned by the caller.
func (s *Service) createTeam(ctx context.Context, caller auth.Identity, name string) (Team, error) {
	u, err := s.userOf(ctx, caller)
	if err != nil {
		return Team{}, err
	}
	var t db.Team
	err = s.st.Tx(ctx, func(q *db.Queries) error {
		var err error
		if t, err = createTeam(ctx, q, u.ID, name); err != nil {
			return err
		}
		audit.Record(ctx, q, audit.Entry{Team: t.ID, Actor: caller, ResourceType: "team", ResourceID: ids.Team.Format(t.ID),
			Action: "team.create", Scope: audit.ScopeAdmin, Metadata: map[string]any{"name": name}})
		return nil
	})
	if err != nil {
		return Team{}, err
	}
	return teamJSON(t, store.RoleOwner), nil
}

func (s *Service) getTeam(ctx context.Context, caller auth.Identity, team uuid.UUID) (TeamDetail, error) {
	t, err := s.liveTeam(ctx, team)
	if err != nil {
		return TeamDetail{}, err
	}
	members, err := s.members(ctx, team)
	if err != nil {
		return TeamDetail{}, err
	}
	return TeamDetail{Team: teamJSON(t, string(caller.Role)), Members: members}, nil
}

func (s *Service) liveTeam(ctx context.Context, team uuid.UUID) (db.Team, error) {
	t, err := s.st.GetTeam(ctx, team)
	if store.IsNotFound(err) {
		return db.Team{}, apierr.NotFound("team not found")
	}
	if err != nil {
		return db.Team{}, internal("read team", err)
	}
	return t, nil
}

func (s *Service) members(ctx context.Context, team uuid.UUID) ([]Member, error) {
	rows, err := s.st.ListTeamMembers(ctx, team)
	if err != nil {
		return nil, internal("list members", err)
	}
	out := make([]Member, 0, len(rows))
	for _, m := range rows {
		out = append(out, memberJSON(m))
	}
	return out, nil
}

// PATCH /v1/teams/{id} {name} → 204 (owner or admin).
func (s *Service) handleRenameTeam(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := httpapi.Identity(r)
	team, err := pathTeam(r, id)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	if !id.Role.CanUpdateTeam() {
		apierr.Write(w, r, apierr.Forbidden("only the team owner or an admin can rename the team"))
		return
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		apierr.Write(w, r, err)
		return
	}
	name, err := checkTeamName(req.Name)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	if err := s.renameTeam(ctx, id, team, name); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

func (s *Service) renameTeam(ctx context.Context, caller auth.Identity, team uuid.UUID, name string) error {
	return s.st.Tx(ctx, func(q *db.Queries) error {
		old, err := q.GetTeam(ctx, team)
		if store.IsNotFound(err) {
			return apierr.NotFound("team not found")
		}
		if err != nil {
			return internal("read team", err)
		}
		if _, err := q.RenameTeam(ctx, db.RenameTeamParams{Name: name, ID: team}); err != nil {
			return internal("rename team", err)
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: caller, ResourceType: "team", ResourceID: ids.Team.Format(team),
			Action: "team.rename", Scope: audit.ScopeAdmin, Metadata: map[string]any{"old_name": old.Name, "name": name}})
		return nil
	})
}

// DELETE /v1/teams/{id} → 204 (owner).
func (s *Service) handleDeleteTeam(w http.ResponseWriter, r *http.Request) {
	id := httpapi.Identity(r)
	team, err := pathTeam(r, id)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	if !id.Role.CanDeleteTeam() {
		apierr.Write(w, r, apierr.Forbidden("only the team owner can delete the team"))
		return
	}
	if err := s.deleteTeam(r.Context(), id, team); err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.NoContent(w)
}

// DeleteTeam soft-deletes team as DELETE /v1/teams/{id} does, on behalf of actor (zero = system).
func (s *Service) DeleteTeam(ctx context.Context, actor auth.Identity, team uuid.UUID) error {
	return s.deleteTeam(ctx, actor, team)
}

// deleteTeam soft-deletes a live team (docs/api.md): its live capsules are destroyed (recorded stopped); its
// API keys, channels, templates and metrics are deleted; deleted_at is set. The platform team cannot be
// deleted (403).
func (s *Service) deleteTeam(ctx context.Context, actor auth.Identity, team uuid.UUID) error {
	if team == store.PlatformTeamID {
		return apierr.Forbidden("the platform team cannot be deleted")
	}
	if _, err := s.liveTeam(ctx, team); err != nil {
		return err
	}
	if err := s.capsules.DestroyTeamCapsules(ctx, team); err != nil {
		return fmt.Errorf("destroy capsules of team %s: %w", ids.Team.Format(team), err)
	}
	// Template files live on hosts; the rows go too (the transaction below deletes any left).
	if err := s.capsules.DeleteTeamTemplates(ctx, team); err != nil {
		return fmt.Errorf("delete templates of team %s: %w", ids.Team.Format(team), err)
	}
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		n, err := q.SoftDeleteTeam(ctx, team)
		if err != nil {
			return internal("delete team", err)
		}
		if n == 0 {
			return apierr.NotFound("team not found")
		}
		steps := []struct {
			what string
			run  func(context.Context, uuid.UUID) (int64, error)
		}{
			{"delete API keys", q.DeleteAPIKeysByTeam},
			{"delete channels", q.DeleteChannelsByTeam},
			{"delete capsule metrics", q.DeleteTeamCapsuleMetrics},
			{"delete team stats", q.DeleteTeamStatsSamples},
		}
		for _, st := range steps {
			if _, err := st.run(ctx, team); err != nil {
				return internal(st.what, err)
			}
		}
		if _, err := q.DeleteTemplatesByTeam(ctx, team); err != nil {
			return internal("delete templates", err)
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: actor, ResourceType: "team", ResourceID: ids.Team.Format(team),
			Action: "team.delete", Scope: audit.ScopeAdmin})
		return nil
	})
	if err != nil {
		return err
	}
	// A capsule created while the team was being deleted is destroyed too (API keys and JWTs of the team
	// stop working at the soft delete).
	if err := s.capsules.DestroyTeamCapsules(context.WithoutCancel(ctx), team); err != nil {
		s.log.ErrorContext(ctx, "destroy capsules of deleted team", "team_id", ids.Team.Format(team), "err", err)
	}
	return nil
}

// GET /v1/teams/{id}/members → [Member].
func (s *Service) handleListMembers(w http.ResponseWriter, r *http.Request) error {
	team, err := pathTeam(r, httpapi.Identity(r))
	if err != nil {
		return err
	}
	members, err := s.members(r.Context(), team)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, members)
	return nil
}

// memberManager returns the caller and the team of a member route when the caller may manage its
// members (owner or admin); action completes "only the team owner or an admin can …".
func memberManager(r *http.Request, action string) (auth.Identity, uuid.UUID, error) {
	id := httpapi.Identity(r)
	team, err := pathTeam(r, id)
	if err != nil {
		return id, uuid.Nil, err
	}
	if !id.Role.CanManageMembers() {
		return id, uuid.Nil, apierr.Forbidden("only the team owner or an admin can " + action)
	}
	return id, team, nil
}

// POST /v1/teams/{id}/members {email} → 201 Member (role member; owner or admin).
func (s *Service) handleAddMember(w http.ResponseWriter, r *http.Request) error {
	id, team, err := memberManager(r, "add members")
	if err != nil {
		return err
	}
	var req struct {
		Email string `json:"email"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		return err
	}
	email := normalizeEmail(req.Email)
	if err := checkEmail(email); err != nil {
		return err
	}
	m, err := s.addMember(r.Context(), id, team, email)
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusCreated, m)
	return nil
}

// PATCH /v1/teams/{id}/members/{uid} {role: admin|member} → 204 (owner or admin; never the owner).
func (s *Service) handleSetMemberRole(w http.ResponseWriter, r *http.Request) error {
	id, team, err := memberManager(r, "change roles")
	if err != nil {
		return err
	}
	var req struct {
		Role string `json:"role"`
	}
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &req); err != nil {
		return err
	}
	if req.Role == "" {
		return apierr.InvalidRequest("role is required")
	}
	role, err := auth.ParseAssignableRole(req.Role)
	if err != nil {
		return err
	}
	uid, err := pathUser(r)
	if err != nil {
		return err
	}
	if err := s.setMemberRole(r.Context(), id, team, uid, role); err != nil {
		return err
	}
	httpapi.NoContent(w)
	return nil
}

// DELETE /v1/teams/{id}/members/{uid} → 204 (owner or admin; never the owner).
func (s *Service) handleRemoveMember(w http.ResponseWriter, r *http.Request) error {
	id, team, err := memberManager(r, "remove members")
	if err != nil {
		return err
	}
	uid, err := pathUser(r)
	if err != nil {
		return err
	}
	if err := s.removeMember(r.Context(), id, team, uid); err != nil {
		return err
	}
	httpapi.NoContent(w)
	return nil
}

// POST /v1/teams/{id}/leave → 204 (anyone but the owner).
func (s *Service) handleLeaveTeam(w http.ResponseWriter, r *http.Request) error {
	id := httpapi.Identity(r)
	team, err := pathTeam(r, id)
	if err != nil {
		return err
	}
	if !id.Role.CanLeaveTeam() {
		return apierr.Forbidden("the team owner cannot leave the team: delete it instead")
	}
	if err := s.leaveTeam(r.Context(), id, team); err != nil {
		return err
	}
	httpapi.NoContent(w)
	return nil
}

// pathUser parses the {uid} of a member route.
func pathUser(r *http.Request) (uuid.UUID, error) {
	uid, err := ids.User.Parse(r.PathValue("uid"))
	if err != nil {
		return uuid.Nil, apierr.InvalidRequest("invalid user ID")
	}
	return uid, nil
}

// addMember adds the active account with email to team as a member.
func (s *Service) addMember(ctx context.Context, caller auth.Identity, team uuid.UUID, email string) (Member, error) {
	var m db.GetTeamMemberInfoRow
	err := s.st.Tx(ctx, func(q *db.Queries) error {
		u, err := q.GetUserByEmail(ctx, email)
		if (err == nil && u.Status != store.UserActive) || store.IsNotFound(err) {
			return apierr.NotFound("no active account with email " + email)
		}
		if err != nil {
			return internal("read user", err)
		}
		_, err = q.AddTeamMember(ctx, db.AddTeamMemberParams{TeamID: team, UserID: u.ID, Role: store.RoleMember})
		if store.IsUniqueViolation(err, "") {
			return apierr.InvalidRequest("user is already a member of this team")
		}
		if err != nil {
			return internal("add member", err)
		}
		if m, err = q.GetTeamMemberInfo(ctx, db.GetTeamMemberInfoParams{TeamID: team, UserID: u.ID}); err != nil {
			return internal("read member", err)
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: caller, ResourceType: "member", ResourceID: ids.User.Format(u.ID),
			Action: "member.add", Scope: audit.ScopeAdmin, Metadata: map[string]any{"email": u.Email, "role": store.RoleMember}})
		return nil
	})
	if err != nil {
		return Member{}, err
	}
	return memberJSON(db.ListTeamMembersRow(m)), nil
}

// checkTarget checks that uid is a member of team the caller may modify: 404 not a member, 403 the
// owner (ownerMsg).
func checkTarget(ctx context.Context, q *db.Queries, team, uid uuid.UUID, caller auth.Role, ownerMsg string) error {
	m, err := q.GetTeamMember(ctx, db.GetTeamMemberParams{TeamID: team, UserID: uid})
	if store.IsNotFound(err) {
		return apierr.NotFound("member not found")
	}
	if err != nil {
		return internal("read member", err)
	}
	if !caller.CanModifyMember(auth.Role(m.Role)) {
		return apierr.Forbidden(ownerMsg)
	}
	return nil
}

func (s *Service) setMemberRole(ctx context.Context, caller auth.Identity, team, uid uuid.UUID, role auth.Role) error {
	return s.st.Tx(ctx, func(q *db.Queries) error {
		if err := checkTarget(ctx, q, team, uid, caller.Role, "the team owner's role cannot be changed"); err != nil {
			return err
		}
		if _, err := q.SetTeamMemberRole(ctx, db.SetTeamMemberRoleParams{Role: string(role), TeamID: team, UserID: uid}); err != nil {
			return internal("set role", err)
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: caller, ResourceType: "member", ResourceID: ids.User.Format(uid),
			Action: "member.role", Scope: audit.ScopeAdmin, Metadata: map[string]any{"role": string(role)}})
		return nil
	})
}

func (s *Service) removeMember(ctx context.Context, caller auth.Identity, team, uid uuid.UUID) error {
	return s.st.Tx(ctx, func(q *db.Queries) error {
		if err := checkTarget(ctx, q, team, uid, caller.Role, "the team owner cannot be removed"); err != nil {
			return err
		}
		if _, err := q.RemoveTeamMember(ctx, db.RemoveTeamMemberParams{TeamID: team, UserID: uid}); err != nil {
			return internal("remove member", err)
		}
		if _, err := q.DeleteTeamAPIKeysCreatedBy(ctx, db.DeleteTeamAPIKeysCreatedByParams{TeamID: team, UserID: &uid}); err != nil {
			return internal("revoke the member's API keys", err)
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: caller, ResourceType: "member", ResourceID: ids.User.Format(uid),
			Action: "member.remove", Scope: audit.ScopeAdmin})
		return nil
	})
}

// leaveTeam removes the caller from team.
func (s *Service) leaveTeam(ctx context.Context, caller auth.Identity, team uuid.UUID) error {
	uid, err := ids.User.Parse(caller.UserID)
	if err != nil {
		return apierr.Unauthorized("invalid or expired token")
	}
	return s.st.Tx(ctx, func(q *db.Queries) error {
		n, err := q.RemoveTeamMember(ctx, db.RemoveTeamMemberParams{TeamID: team, UserID: uid})
		if err != nil {
			return internal("leave team", err)
		}
		if n > 0 {
			if _, err := q.DeleteTeamAPIKeysCreatedBy(ctx, db.DeleteTeamAPIKeysCreatedByParams{TeamID: team, UserID: &uid}); err != nil {
				return internal("revoke API keys", err)
			}
		}
		audit.Record(ctx, q, audit.Entry{Team: team, Actor: caller, ResourceType: "member", ResourceID: caller.UserID,
			Action: "member.leave", Scope: audit.ScopeAdmin})
		return nil
	})
}

// UserMatch is one result of GET /v1/users/search.
type UserMatch struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

const maxSearchResults = 10

// GET /v1/users/search?email=<prefix> → [{user_id, email}] (≤ 10 active accounts).
func (s *Service) handleSearchUsers(w http.ResponseWriter, r *http.Request) {
	prefix := normalizeEmail(r.URL.Query().Get("email"))
	if len([]rune(prefix)) < 3 || !strings.Contains(prefix, "@") {
		apierr.Write(w, r, apierr.InvalidRequest("email must be at least 3 characters and contain @"))
		return
	}
	out, err := s.searchUsers(r.Context(), prefix)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) searchUsers(ctx context.Context, prefix string) ([]UserMatch, error) {
	rows, err := s.st.SearchActiveUsersByEmailPrefix(ctx, db.SearchActiveUsersByEmailPrefixParams{Prefix: prefix, MaxResults: maxSearchResults})
	if err != nil {
		return nil, internal("search users", err)
	}
	out := make([]UserMatch, 0, len(rows))
	for _, u := range rows {
		out = append(out, UserMatch{UserID: ids.User.Format(u.ID), Email: u.Email})
	}
	return out, nil
}
