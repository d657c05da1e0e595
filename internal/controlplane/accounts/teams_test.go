package accounts_test

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestTeams(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	adm := f.member(t, a, "adam", auth.RoleAdmin)
	mem := f.member(t, a, "mia", auth.RoleMember)
	b := f.NewAccount(t, "bob", false)

	res := f.Do(t, http.MethodPost, "/v1/teams", cptest.Bearer(a.JWT), map[string]string{"name": "  Research_Team 2 "})
	expect(t, res, http.StatusCreated, "")
	var created accounts.Team
	res.JSON(t, &created)
	if created.Name != "Research_Team 2" || created.Role != "owner" || created.IsBYOC || !regexp.MustCompile(`^[0-9a-f]{6}-[0-9a-f]{6}$`).MatchString(created.Slug) ||
		!strings.HasPrefix(created.ID, "team-") || !strings.HasSuffix(created.CreatedAt, "Z") {
		t.Fatalf("created team %+v", created)
	}
	if n := f.auditCount(t, parseTeam(t, created.ID), "team.create"); n != 1 {
		t.Fatalf("%d team.create entries", n)
	}
	for name, body := range map[string]any{
		"bad JSON": []byte(`{`), "missing": map[string]string{}, "blank": map[string]string{"name": "   "},
		"symbols": map[string]string{"name": "team-1!"}, "apostrophe": map[string]string{"name": "Bob's"},
		"long": map[string]string{"name": strings.Repeat("a", 129)},
	} {
		t.Run("create "+name, func(t *testing.T) {
			expect(t, f.Do(t, http.MethodPost, "/v1/teams", cptest.Bearer(a.JWT), body), http.StatusBadRequest, "invalid_request")
		})
	}
	expect(t, f.Do(t, http.MethodPost, "/v1/teams", cptest.Bearer(a.JWT), map[string]string{"name": strings.Repeat("a", 128)}), http.StatusCreated, "")
	expect(t, f.Do(t, http.MethodPost, "/v1/teams", cptest.Key(a.APIKey), map[string]string{"name": "x"}), http.StatusUnauthorized, "unauthorized")

	res = f.Do(t, http.MethodGet, "/v1/teams", cptest.Bearer(a.JWT), nil)
	var teams []accounts.Team
	res.JSON(t, &teams)
	if len(teams) != 3 || teams[0].ID != a.TeamID || teams[0].Role != "owner" || teams[1].ID != created.ID {
		t.Fatalf("alice's teams %+v", teams)
	}
	f.Do(t, http.MethodGet, "/v1/teams", cptest.Bearer(mem.JWT), nil).JSON(t, &teams)
	if len(teams) != 2 || teams[1].ID != a.TeamID || teams[1].Role != "member" {
		t.Fatalf("mia's teams %+v", teams)
	}

	// GET /v1/teams/{id}: the JWT's team only.
	res = f.Do(t, http.MethodGet, "/v1/teams/"+a.TeamID, cptest.Bearer(mem.JWT), nil)
	expect(t, res, http.StatusOK, "")
	var detail struct {
		Team    accounts.Team
		Members []accounts.Member
	}
	res.JSON(t, &detail)
	if detail.Team.ID != a.TeamID || detail.Team.Role != "member" || len(detail.Members) != 3 ||
		detail.Members[0].UserID != a.UserID || detail.Members[0].Role != "owner" || detail.Members[0].Email != a.Email ||
		detail.Members[2].UserID != mem.UserID || detail.Members[2].Name != "mia" || !strings.HasSuffix(detail.Members[2].JoinedAt, "Z") {
		t.Fatalf("team detail %s", res.Body)
	}
	res = f.Do(t, http.MethodGet, "/v1/teams/"+created.ID, cptest.Bearer(a.JWT), nil)
	expect(t, res, http.StatusForbidden, "forbidden")
	if !strings.Contains(message(t, res), "switch-team") {
		t.Fatalf("message %q does not point to switch-team", message(t, res))
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/teams/"+b.TeamID, cptest.Bearer(a.JWT), nil), http.StatusForbidden, "forbidden")
	expect(t, f.Do(t, http.MethodGet, "/v1/teams/team-nope", cptest.Bearer(a.JWT), nil), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodGet, "/v1/teams/"+a.TeamID+"/members", cptest.Bearer(b.JWT), nil), http.StatusForbidden, "forbidden")
	res = f.Do(t, http.MethodGet, "/v1/teams/"+a.TeamID+"/members", cptest.Bearer(mem.JWT), nil)
	expect(t, res, http.StatusOK, "")
	var members []accounts.Member
	res.JSON(t, &members)
	if len(members) != 3 {
		t.Fatalf("members %s", res.Body)
	}

	// Rename: owner or admin.
	rename := func(jwt, name string) cptest.Response {
		return f.Do(t, http.MethodPatch, "/v1/teams/"+a.TeamID, cptest.Bearer(jwt), map[string]string{"name": name})
	}
	expect(t, rename(mem.JWT, "Members Rule"), http.StatusForbidden, "forbidden")
	expect(t, rename(adm.JWT, "Renamed by admin"), http.StatusNoContent, "")
	expect(t, rename(a.JWT, "bad!name"), http.StatusBadRequest, "invalid_request")
	expect(t, rename(b.JWT, "Hijack"), http.StatusForbidden, "forbidden")
	expect(t, rename(a.JWT, "Final Name"), http.StatusNoContent, "")
	f.Do(t, http.MethodGet, "/v1/teams/"+a.TeamID, cptest.Bearer(a.JWT), nil).JSON(t, &detail)
	if detail.Team.Name != "Final Name" {
		t.Fatalf("team name %q", detail.Team.Name)
	}
	if n := f.auditCount(t, a.Team, "team.rename"); n != 2 {
		t.Fatalf("%d team.rename entries", n)
	}

	// Delete: owner only.
	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID, cptest.Bearer(mem.JWT), nil), http.StatusForbidden, "forbidden")
	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID, cptest.Bearer(adm.JWT), nil), http.StatusForbidden, "forbidden")
	if f.caps.called(a.Team) {
		t.Fatal("a refused deletion destroyed capsules")
	}
}

func TestMembers(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	adm := f.member(t, a, "adam", auth.RoleAdmin)
	mem := f.member(t, a, "mia", auth.RoleMember)
	newbie := f.NewAccount(t, "newbie", false)
	second := f.NewAccount(t, "second", false)
	pending := f.NewAccount(t, "pending", false)
	f.exec(t, `UPDATE users SET status = 'inactive' WHERE id = $1`, pending.User)
	path := "/v1/teams/" + a.TeamID + "/members"
	add := func(jwt, email string) cptest.Response {
		return f.Do(t, http.MethodPost, path, cptest.Bearer(jwt), map[string]string{"email": email})
	}

	expect(t, add(mem.JWT, newbie.Email), http.StatusForbidden, "forbidden")
	res := add(a.JWT, " "+strings.ToUpper(newbie.Email)+" ")
	expect(t, res, http.StatusCreated, "")
	var m accounts.Member
	res.JSON(t, &m)
	if m.UserID != newbie.UserID || m.Role != "member" || m.Email != newbie.Email || m.Name != "newbie" || m.JoinedAt == "" {
		t.Fatalf("added member %+v", m)
	}
	expect(t, add(adm.JWT, second.Email), http.StatusCreated, "")
	expect(t, add(a.JWT, newbie.Email), http.StatusBadRequest, "invalid_request")
	expect(t, add(a.JWT, "ghost@example.test"), http.StatusNotFound, "not_found")
	expect(t, add(a.JWT, pending.Email), http.StatusNotFound, "not_found")
	expect(t, add(a.JWT, "not-an-email"), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, path, cptest.Bearer(a.JWT), map[string]string{}), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, path, cptest.Bearer(a.JWT), []byte("x")), http.StatusBadRequest, "invalid_request")
	if n := f.auditCount(t, a.Team, "member.add"); n != 2 {
		t.Fatalf("%d member.add entries", n)
	}

	setRole := func(jwt, uid string, body any) cptest.Response {
		return f.Do(t, http.MethodPatch, path+"/"+uid, cptest.Bearer(jwt), body)
	}
	role := func(r string) map[string]string { return map[string]string{"role": r} }
	expect(t, setRole(mem.JWT, newbie.UserID, role("admin")), http.StatusForbidden, "forbidden")
	expect(t, setRole(a.JWT, newbie.UserID, role("owner")), http.StatusBadRequest, "invalid_request")
	expect(t, setRole(a.JWT, newbie.UserID, role("boss")), http.StatusBadRequest, "invalid_request")
	expect(t, setRole(a.JWT, newbie.UserID, map[string]string{}), http.StatusBadRequest, "invalid_request")
	expect(t, setRole(a.JWT, newbie.UserID, []byte("{")), http.StatusBadRequest, "invalid_request")
	expect(t, setRole(a.JWT, "usr-bad", role("admin")), http.StatusBadRequest, "invalid_request")
	expect(t, setRole(a.JWT, pending.UserID, role("admin")), http.StatusNotFound, "not_found")
	expect(t, setRole(adm.JWT, a.UserID, role("member")), http.StatusForbidden, "forbidden") // the owner
	expect(t, setRole(a.JWT, a.UserID, role("admin")), http.StatusForbidden, "forbidden")
	expect(t, setRole(a.JWT, newbie.UserID, role("admin")), http.StatusNoContent, "")
	expect(t, setRole(adm.JWT, newbie.UserID, role("member")), http.StatusNoContent, "")
	expect(t, setRole(a.JWT, mem.UserID, role("admin")), http.StatusNoContent, "")
	// Roles are re-read on every request: mia is now admin with her old JWT.
	expect(t, add(mem.JWT, pending.Email), http.StatusNotFound, "not_found")
	expect(t, setRole(a.JWT, mem.UserID, role("member")), http.StatusNoContent, "")
	if n := f.auditCount(t, a.Team, "member.role"); n != 4 {
		t.Fatalf("%d member.role entries", n)
	}

	remove := func(jwt, uid string) cptest.Response {
		return f.Do(t, http.MethodDelete, path+"/"+uid, cptest.Bearer(jwt), nil)
	}
	expect(t, remove(mem.JWT, newbie.UserID), http.StatusForbidden, "forbidden")
	expect(t, remove(adm.JWT, a.UserID), http.StatusForbidden, "forbidden")
	expect(t, remove(a.JWT, a.UserID), http.StatusForbidden, "forbidden")
	expect(t, remove(a.JWT, "team-x"), http.StatusBadRequest, "invalid_request")
	expect(t, remove(a.JWT, ids.User.Format(uuid.New())), http.StatusNotFound, "not_found")
	expect(t, remove(adm.JWT, second.UserID), http.StatusNoContent, "")
	expect(t, remove(adm.JWT, second.UserID), http.StatusNotFound, "not_found")
	if n := f.auditCount(t, a.Team, "member.remove"); n != 1 {
		t.Fatalf("%d member.remove entries", n)
	}

	// Leave: anyone but the owner; the old JWT then has no team.
	leave := func(jwt string) cptest.Response {
		return f.Do(t, http.MethodPost, "/v1/teams/"+a.TeamID+"/leave", cptest.Bearer(jwt), nil)
	}
	expect(t, leave(a.JWT), http.StatusForbidden, "forbidden")
	expect(t, leave(mem.JWT), http.StatusNoContent, "")
	expect(t, leave(mem.JWT), http.StatusForbidden, "forbidden")
	expect(t, f.Do(t, http.MethodGet, "/v1/teams/"+a.TeamID, cptest.Bearer(mem.JWT), nil), http.StatusForbidden, "forbidden")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Bearer(mem.JWT), nil), http.StatusForbidden, "no_team")
	if n := f.auditCount(t, a.Team, "member.leave"); n != 1 {
		t.Fatalf("%d member.leave entries", n)
	}

	var members []accounts.Member
	f.Do(t, http.MethodGet, path, cptest.Bearer(a.JWT), nil).JSON(t, &members)
	var got []string
	for _, m := range members {
		got = append(got, m.Name+":"+m.Role)
	}
	if want := "alice:owner adam:admin newbie:member"; strings.Join(got, " ") != want {
		t.Fatalf("members %q, want %q", strings.Join(got, " "), want)
	}
}

func TestDeleteTeam(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	mem := f.member(t, a, "mia", auth.RoleMember)
	b := f.NewAccount(t, "bob", false)
	f.exec(t, `INSERT INTO capsules (team_id, template_name, status, vcpus, memory_mb) VALUES ($1, 'minimal', 'running', 1, 512), ($1, 'minimal', 'paused', 1, 512), ($2, 'minimal', 'running', 1, 512)`, a.Team, b.Team)
	f.exec(t, `INSERT INTO capsule_metrics (capsule_id, tier, ts, cpu_pct, mem_bytes, disk_bytes) SELECT id, '10m', now(), 1, 1, 1 FROM capsules`)
	f.exec(t, `INSERT INTO team_stats_samples (team_id, ts, running_count, vcpus, memory_mb) VALUES ($1, now(), 1, 1, 512), ($2, now(), 1, 1, 512)`, a.Team, b.Team)
	f.exec(t, `INSERT INTO channels (team_id, name, provider, config) VALUES ($1, 'hook', 'webhook', '\x01'), ($2, 'hook', 'webhook', '\x01')`, a.Team, b.Team)
	f.exec(t, `INSERT INTO templates (team_id, name, type) VALUES ($1, 'mine', 'base'), ($2, 'mine', 'base')`, a.Team, b.Team)

	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+b.TeamID, cptest.Bearer(a.JWT), nil), http.StatusForbidden, "forbidden")
	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/bad", cptest.Bearer(a.JWT), nil), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID, cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")

	// A failing teardown changes nothing.
	f.caps.setFail(errors.New("agent exploded"))
	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID, cptest.Bearer(a.JWT), nil), http.StatusInternalServerError, "internal_error")
	if n := f.count(t, `SELECT count(*) FROM teams WHERE id = $1 AND deleted_at IS NULL`, a.Team); n != 1 {
		t.Fatal("team deleted although its capsules could not be destroyed")
	}
	f.caps.setFail(nil)

	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID, cptest.Bearer(a.JWT), nil), http.StatusNoContent, "")
	if !f.caps.called(a.Team) || f.caps.called(b.Team) {
		t.Fatalf("destroyer called for %v", f.caps.list())
	}
	for what, q := range map[string]string{
		"live capsules":    `SELECT count(*) FROM capsules WHERE team_id = $1 AND status <> 'stopped'`,
		"API keys":         `SELECT count(*) FROM api_keys WHERE team_id = $1`,
		"channels":         `SELECT count(*) FROM channels WHERE team_id = $1`,
		"templates":        `SELECT count(*) FROM templates WHERE team_id = $1`,
		"capsule metrics":  `SELECT count(*) FROM capsule_metrics m JOIN capsules c ON c.id = m.capsule_id WHERE c.team_id = $1`,
		"team stats":       `SELECT count(*) FROM team_stats_samples WHERE team_id = $1`,
		"undeleted record": `SELECT count(*) FROM teams WHERE id = $1 AND deleted_at IS NULL`,
	} {
		if n := f.count(t, q, a.Team); n != 0 {
			t.Errorf("after deletion: %d %s of the team", n, what)
		}
		if what != "live capsules" && what != "undeleted record" {
			if n := f.count(t, q, b.Team); n != 1 {
				t.Errorf("another team's %s touched: %d", what, n)
			}
		}
	}
	if n := f.auditCount(t, a.Team, "team.delete"); n != 1 {
		t.Fatalf("%d team.delete entries", n)
	}
	// The team's credentials stop working; members see it gone.
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Bearer(mem.JWT), nil), http.StatusForbidden, "no_team")
	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID, cptest.Bearer(a.JWT), nil), http.StatusForbidden, "forbidden")
	var teams []accounts.Team
	f.Do(t, http.MethodGet, "/v1/teams", cptest.Bearer(a.JWT), nil).JSON(t, &teams)
	if len(teams) != 0 {
		t.Fatalf("deleted team still listed: %+v", teams)
	}
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(mem.JWT), map[string]string{"team_id": a.TeamID}), http.StatusNotFound, "not_found")
}

func TestUserSearch(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	for i := range 12 {
		f.exec(t, `INSERT INTO users (email, name, status) VALUES ($1, 'x', 'active')`, fmt.Sprintf("q@zed%02d.test", i))
	}
	f.exec(t, `INSERT INTO users (email, name, status) VALUES ('pend@zed.test', 'x', 'inactive'), ('q%@zedx.test', 'x', 'active')`)
	search := func(q string) cptest.Response {
		return f.Do(t, http.MethodGet, "/v1/users/search?email="+q, cptest.Bearer(a.JWT), nil)
	}
	res := search("Q%40ZED")
	expect(t, res, http.StatusOK, "")
	var got []accounts.UserMatch
	res.JSON(t, &got)
	if len(got) != 10 || got[0].Email != "q@zed00.test" || !strings.HasPrefix(got[0].UserID, "usr-") {
		t.Fatalf("search q@zed: %s", res.Body)
	}
	search("q@zed1").JSON(t, &got)
	if len(got) != 2 {
		t.Fatalf("search q@zed1: %+v", got)
	}
	// LIKE wildcards are literal; inactive accounts are not found.
	search("q%25@").JSON(t, &got)
	if len(got) != 1 || got[0].Email != "q%@zedx.test" {
		t.Fatalf("search q%%@: %+v", got)
	}
	res = search("pend@")
	expect(t, res, http.StatusOK, "")
	res.JSON(t, &got)
	if len(got) != 0 {
		t.Fatalf("inactive account found: %+v", got)
	}
	expect(t, search("q@"), http.StatusBadRequest, "invalid_request")
	expect(t, search("qzed00"), http.StatusBadRequest, "invalid_request")
	expect(t, search(""), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodGet, "/v1/users/search?email=q@zed", cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")
}
