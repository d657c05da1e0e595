package accounts_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

type adminTeams struct {
	Teams      []accounts.AdminTeam
	Total      int64
	Page       int
	PerPage    int `json:"per_page"`
	TotalPages int `json:"total_pages"`
}

type adminUsers struct {
	Users      []accounts.AdminUser
	Total      int64
	Page       int
	PerPage    int `json:"per_page"`
	TotalPages int `json:"total_pages"`
}

func TestAdminRoutesNeedAdmin(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	admin := f.NewAccount(t, "root", true)
	for _, rt := range []struct{ method, path string }{
		{http.MethodGet, "/v1/admin/teams"},
		{http.MethodPut, "/v1/admin/teams/" + a.TeamID + "/byoc"},
		{http.MethodDelete, "/v1/admin/teams/" + a.TeamID},
		{http.MethodGet, "/v1/admin/users"},
		{http.MethodPut, "/v1/admin/users/" + a.UserID + "/active"},
	} {
		res := f.Do(t, rt.method, rt.path, cptest.Bearer(a.JWT), map[string]bool{"enabled": true, "active": false})
		expect(t, res, http.StatusForbidden, "forbidden")
		if message(t, res) != "admin access required" {
			t.Errorf("%s %s: message %q", rt.method, rt.path, message(t, res))
		}
		expect(t, f.Do(t, rt.method, rt.path, cptest.Key(admin.APIKey), nil), http.StatusUnauthorized, "unauthorized")
		expect(t, f.Do(t, rt.method, rt.path, none, nil), http.StatusUnauthorized, "unauthorized")
	}
	if f.caps.called(a.Team) || f.user(t, a.User).Status != "active" {
		t.Fatal("a refused admin call changed something")
	}
	// Admin rights are re-read: a revoked admin is refused at once.
	f.exec(t, `UPDATE users SET is_admin = false WHERE id = $1`, admin.User)
	expect(t, f.Do(t, http.MethodGet, "/v1/admin/users", cptest.Bearer(admin.JWT), nil), http.StatusForbidden, "forbidden")
}

func TestAdminListTeams(t *testing.T) {
	f := newFixture(t)
	admin := f.NewAccount(t, "root", true)
	a := f.NewAccount(t, "alice", false)
	f.member(t, a, "mia", auth.RoleMember)
	f.exec(t, `INSERT INTO capsules (team_id, template_name, status, vcpus, memory_mb) VALUES ($1, 'minimal', 'running', 1, 512), ($1, 'minimal', 'stopped', 1, 512)`, a.Team)
	f.exec(t, `INSERT INTO channels (team_id, name, provider, config) VALUES ($1, 'hook', 'webhook', '\x01')`, a.Team)
	f.exec(t, `UPDATE teams SET deleted_at = now() WHERE id = $1`, admin.Team)
	// platform + root's, alice's, mia's + 100 more teams = 104: two pages.
	f.exec(t, `INSERT INTO teams (name, created_at) SELECT 'bulk ' || i, now() + i * interval '1 second' FROM generate_series(1, 100) i`)

	var page adminTeams
	res := f.Do(t, http.MethodGet, "/v1/admin/teams", cptest.Bearer(admin.JWT), nil)
	expect(t, res, http.StatusOK, "")
	res.JSON(t, &page)
	if page.Total != 104 || page.Page != 1 || page.PerPage != 100 || page.TotalPages != 2 || len(page.Teams) != 100 {
		t.Fatalf("page 1: total %d page %d per_page %d pages %d len %d", page.Total, page.Page, page.PerPage, page.TotalPages, len(page.Teams))
	}
	byID := map[string]accounts.AdminTeam{}
	for _, tm := range page.Teams {
		byID[tm.ID] = tm
	}
	at := byID[a.TeamID]
	if at.Name != "alice's Team" || at.MemberCount != 2 || at.OwnerName != "alice" || at.OwnerEmail != a.Email ||
		at.ActiveSandboxCount != 1 || at.ChannelCount != 1 || at.DeletedAt != "" || at.Slug == "" || at.CreatedAt == "" {
		t.Fatalf("alice's team %+v", at)
	}
	if d := byID[admin.TeamID]; d.DeletedAt == "" {
		t.Fatalf("deleted team without deleted_at: %+v", d)
	}
	if p := byID[ids.Team.Format(store.PlatformTeamID)]; p.Name != "Platform" {
		t.Fatalf("platform team %+v", p)
	}
	if !strings.Contains(string(res.Body), `"owner_email"`) || strings.Contains(string(res.Body), `"deleted_at":""`) {
		t.Fatalf("AdminTeam JSON shape: %.400s", res.Body)
	}
	f.Do(t, http.MethodGet, "/v1/admin/teams?page=2", cptest.Bearer(admin.JWT), nil).JSON(t, &page)
	if page.Page != 2 || len(page.Teams) != 4 {
		t.Fatalf("page 2: page %d, %d teams", page.Page, len(page.Teams))
	}
	f.Do(t, http.MethodGet, "/v1/admin/teams?page=9", cptest.Bearer(admin.JWT), nil).JSON(t, &page)
	if len(page.Teams) != 0 || page.Teams == nil {
		t.Fatalf("page 9: %+v", page.Teams)
	}
	for _, q := range []string{"0", "-1", "x", "1.5"} {
		expect(t, f.Do(t, http.MethodGet, "/v1/admin/teams?page="+q, cptest.Bearer(admin.JWT), nil), http.StatusBadRequest, "invalid_request")
	}
}

func TestAdminBYOC(t *testing.T) {
	f := newFixture(t)
	admin := f.NewAccount(t, "root", true)
	a := f.NewAccount(t, "alice", false)
	byoc := func(team string, body any) cptest.Response {
		return f.Do(t, http.MethodPut, "/v1/admin/teams/"+team+"/byoc", cptest.Bearer(admin.JWT), body)
	}
	on := map[string]bool{"enabled": true}
	off := map[string]bool{"enabled": false}
	expect(t, byoc(a.TeamID, off), http.StatusNoContent, "") // already off
	expect(t, byoc(a.TeamID, on), http.StatusNoContent, "")
	expect(t, byoc(a.TeamID, on), http.StatusNoContent, "")
	res := byoc(a.TeamID, off)
	expect(t, res, http.StatusBadRequest, "invalid_request")
	if !strings.Contains(message(t, res), "cannot be disabled") {
		t.Fatalf("message %q", message(t, res))
	}
	var teams []accounts.Team
	f.Do(t, http.MethodGet, "/v1/teams", cptest.Bearer(a.JWT), nil).JSON(t, &teams)
	if !teams[0].IsBYOC {
		t.Fatal("BYOC not enabled")
	}
	if n := f.auditCount(t, a.Team, "team.byoc_enable"); n != 1 {
		t.Fatalf("%d team.byoc_enable entries", n)
	}
	expect(t, byoc(a.TeamID, map[string]string{}), http.StatusBadRequest, "invalid_request")
	expect(t, byoc(a.TeamID, []byte("{")), http.StatusBadRequest, "invalid_request")
	expect(t, byoc(a.TeamID, map[string]string{"enabled": "yes"}), http.StatusBadRequest, "invalid_request")
	expect(t, byoc("team-x", on), http.StatusBadRequest, "invalid_request")
	expect(t, byoc(ids.Team.Format(uuid.New()), on), http.StatusNotFound, "not_found")
	expect(t, byoc(ids.Team.Format(store.PlatformTeamID), on), http.StatusBadRequest, "invalid_request")
	f.exec(t, `UPDATE teams SET deleted_at = now() WHERE id = $1`, admin.Team)
	expect(t, byoc(admin.TeamID, on), http.StatusNotFound, "not_found")
}

func TestAdminDeleteTeam(t *testing.T) {
	f := newFixture(t)
	admin := f.NewAccount(t, "root", true)
	a := f.NewAccount(t, "alice", false)
	f.exec(t, `INSERT INTO capsules (team_id, template_name, status, vcpus, memory_mb) VALUES ($1, 'minimal', 'running', 1, 512)`, a.Team)
	del := func(team string) cptest.Response {
		return f.Do(t, http.MethodDelete, "/v1/admin/teams/"+team, cptest.Bearer(admin.JWT), nil)
	}
	expect(t, del(ids.Team.Format(store.PlatformTeamID)), http.StatusForbidden, "forbidden")
	expect(t, del("bad"), http.StatusBadRequest, "invalid_request")
	expect(t, del(ids.Team.Format(uuid.New())), http.StatusNotFound, "not_found")
	expect(t, del(a.TeamID), http.StatusNoContent, "")
	if !f.caps.called(a.Team) {
		t.Fatal("capsules of the deleted team not destroyed")
	}
	if n := f.count(t, `SELECT count(*) FROM capsules WHERE team_id = $1 AND status <> 'stopped'`, a.Team); n != 0 {
		t.Fatal("live capsules left")
	}
	if n := f.count(t, `SELECT count(*) FROM audit_logs WHERE team_id = $1 AND action = 'team.delete' AND actor_id = $2`, a.Team, admin.User); n != 1 {
		t.Fatal("no team.delete entry by the admin")
	}
	expect(t, del(a.TeamID), http.StatusNotFound, "not_found")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")
}

func TestAdminUsers(t *testing.T) {
	f := newFixture(t)
	admin := f.NewAccount(t, "root", true)
	a := f.NewAccount(t, "alice", false)
	f.setPassword(t, a.User, "alice password")
	second := f.NewAccount(t, "alice2", false) // a second team owned by alice
	f.exec(t, `DELETE FROM team_members WHERE team_id = $1 AND user_id = $2`, second.Team, second.User)
	f.AddMember(t, second.Team, a.User, auth.RoleOwner)
	b := f.NewAccount(t, "bob", false)
	f.AddMember(t, b.Team, a.User, auth.RoleAdmin) // alice is admin (not owner) of bob's team
	f.exec(t, `INSERT INTO capsules (team_id, template_name, status, vcpus, memory_mb) VALUES ($1, 'minimal', 'running', 1, 512), ($2, 'minimal', 'running', 1, 512)`, a.Team, b.Team)

	var page adminUsers
	res := f.Do(t, http.MethodGet, "/v1/admin/users", cptest.Bearer(admin.JWT), nil)
	expect(t, res, http.StatusOK, "")
	res.JSON(t, &page)
	if page.Total != 4 || page.Page != 1 || page.PerPage != 100 || page.TotalPages != 1 || len(page.Users) != 4 {
		t.Fatalf("users page %s", res.Body)
	}
	au := page.Users[1]
	if au.ID != a.UserID || au.Email != a.Email || au.Name != "alice" || au.IsAdmin || au.Status != "active" ||
		au.TeamsJoined != 3 || au.TeamsOwned != 2 || au.CreatedAt == "" || !page.Users[0].IsAdmin {
		t.Fatalf("alice as listed %+v", au)
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/admin/users?page=0", cptest.Bearer(admin.JWT), nil), http.StatusBadRequest, "invalid_request")

	active := func(user string, body any) cptest.Response {
		return f.Do(t, http.MethodPut, "/v1/admin/users/"+user+"/active", cptest.Bearer(admin.JWT), body)
	}
	expect(t, active(admin.UserID, map[string]bool{"active": false}), http.StatusBadRequest, "invalid_request")
	expect(t, active(a.UserID, map[string]string{}), http.StatusBadRequest, "invalid_request")
	expect(t, active(a.UserID, []byte("]")), http.StatusBadRequest, "invalid_request")
	expect(t, active("usr-x", map[string]bool{"active": false}), http.StatusBadRequest, "invalid_request")
	expect(t, active(ids.User.Format(uuid.New()), map[string]bool{"active": false}), http.StatusNotFound, "not_found")

	expect(t, active(a.UserID, map[string]bool{"active": false}), http.StatusNoContent, "")
	if u := f.user(t, a.User); u.Status != "disabled" {
		t.Fatalf("status %s after deactivation", u.Status)
	}
	// Keys of the teams alice owns are gone, their capsules destroyed; bob's team is untouched.
	for _, team := range []uuid.UUID{a.Team, second.Team} {
		if n := f.count(t, `SELECT count(*) FROM api_keys WHERE team_id = $1`, team); n != 0 {
			t.Errorf("%d API keys left in an owned team", n)
		}
		if !f.caps.called(team) {
			t.Errorf("capsules of owned team %s not destroyed", team)
		}
	}
	if f.caps.called(b.Team) || f.count(t, `SELECT count(*) FROM api_keys WHERE team_id = $1`, b.Team) != 1 {
		t.Fatal("deactivation touched a team alice does not own")
	}
	if n := f.count(t, `SELECT count(*) FROM capsules WHERE team_id = $1 AND status = 'running'`, a.Team); n != 0 {
		t.Fatal("capsule of an owned team still running")
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil), http.StatusForbidden, "account_deactivated")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Bearer(a.JWT), nil), http.StatusForbidden, "account_deactivated")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")
	login := map[string]string{"email": a.Email, "password": "alice password"}
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, login), http.StatusForbidden, "account_disabled")
	if n := f.count(t, `SELECT count(*) FROM audit_logs WHERE team_id = $1 AND action = 'user.deactivate' AND resource_id = $2 AND scope = 'admin'`, store.PlatformTeamID, a.UserID); n != 1 {
		t.Fatal("no user.deactivate entry")
	}

	expect(t, active(a.UserID, map[string]bool{"active": true}), http.StatusNoContent, "")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, login), http.StatusOK, "")
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil), http.StatusOK, "")

	// Activating a pending signup activates it with its default team.
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody("late@example.test", "Late")), http.StatusCreated, "")
	f.mailer.next(t)
	var late uuid.UUID
	if err := f.Store.Pool().QueryRow(t.Context(), `SELECT id FROM users WHERE email = 'late@example.test'`).Scan(&late); err != nil {
		t.Fatal(err)
	}
	expect(t, active(ids.User.Format(late), map[string]bool{"active": true}), http.StatusNoContent, "")
	if u := f.user(t, late); u.Status != "active" || u.IsAdmin {
		t.Fatalf("activated signup %+v", u)
	}
	if n := f.count(t, `SELECT count(*) FROM team_members m JOIN teams t ON t.id = m.team_id WHERE m.user_id = $1 AND m.role = 'owner' AND t.name = 'Late''s Team'`, late); n != 1 {
		t.Fatal("activated signup has no default team")
	}

	// A deleted account is not found.
	f.exec(t, `UPDATE users SET status = 'deleted', deleted_at = now() WHERE id = $1`, b.User)
	expect(t, active(b.UserID, map[string]bool{"active": true}), http.StatusNotFound, "not_found")
}
