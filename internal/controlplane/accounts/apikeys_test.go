package accounts_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestAPIKeys(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	m := f.member(t, a, "mallory", auth.RoleMember)
	adm := f.member(t, a, "adam", auth.RoleAdmin)
	b := f.NewAccount(t, "bob", false)

	// Members may not create keys; owners and admins create keys for the team of their JWT.
	expect(t, f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(m.JWT), map[string]string{"name": "mine"}), http.StatusForbidden, "forbidden")
	res := f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(adm.JWT), map[string]string{"name": "  ci  "})
	expect(t, res, http.StatusCreated, "")
	var k accounts.APIKey
	res.JSON(t, &k)
	if !strings.HasPrefix(k.ID, "key-") || k.TeamID != a.TeamID || k.Name != "ci" || k.CreatedBy != adm.UserID ||
		!auth.IsAPIKey(k.Key) || k.KeyPrefix != k.Key[:10] || k.LastUsed != "" || k.CreatorEmail != "" {
		t.Fatalf("created key %+v", k)
	}
	if _, err := time.Parse(time.RFC3339, k.CreatedAt); err != nil || !strings.HasSuffix(k.CreatedAt, "Z") {
		t.Fatalf("created_at %q", k.CreatedAt)
	}
	// The key works on capsule routes, for alice's team, and only there.
	res = f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(k.Key), nil)
	expect(t, res, http.StatusOK, "")
	var probe map[string]string
	res.JSON(t, &probe)
	if probe["team_id"] != a.TeamID || probe["api_key_id"] != k.ID {
		t.Fatalf("key acts as %v", probe)
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Key(k.Key), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Key(k.Key), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodGet, "/v1/teams", cptest.Key(k.Key), nil), http.StatusUnauthorized, "unauthorized")

	for _, body := range []any{nil, map[string]string{}, map[string]string{"name": "   "}} {
		res = f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(a.JWT), body)
		expect(t, res, http.StatusCreated, "")
		var d accounts.APIKey
		res.JSON(t, &d)
		if d.Name != "Unnamed API Key" {
			t.Fatalf("default name %q", d.Name)
		}
	}
	expect(t, f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(a.JWT), map[string]string{"name": strings.Repeat("n", 257)}),
		http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(a.JWT), []byte(`{"name":`)), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(a.JWT), map[string]int{"name": 1}), http.StatusBadRequest, "invalid_request")

	res = f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(a.JWT), nil)
	expect(t, res, http.StatusOK, "")
	var list []accounts.APIKey
	res.JSON(t, &list)
	if len(list) != 5 { // cptest's key, ci, 3 unnamed
		t.Fatalf("listed %d keys: %+v", len(list), list)
	}
	var ci accounts.APIKey
	for _, l := range list {
		if l.Key != "" || strings.Contains(string(res.Body), `"key":`) {
			t.Fatalf("listing shows a secret: %s", res.Body)
		}
		if l.ID == k.ID {
			ci = l
		}
	}
	if ci.CreatorEmail != adm.Email || ci.LastUsed == "" || ci.KeyPrefix != k.KeyPrefix {
		t.Fatalf("listed key %+v, want creator %s and last_used set", ci, adm.Email)
	}
	// Members list the keys.
	expect(t, f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(m.JWT), nil), http.StatusOK, "")
	res = f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(b.JWT), nil)
	res.JSON(t, &list)
	if len(list) != 1 || list[0].TeamID != b.TeamID {
		t.Fatalf("bob sees %+v", list)
	}

	// Another team's key is not found; bad ids are 400.
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/"+k.ID, cptest.Bearer(b.JWT), nil), http.StatusNotFound, "not_found")
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/"+ids.APIKey.Format(uuid.New()), cptest.Bearer(a.JWT), nil), http.StatusNotFound, "not_found")
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/usr-123", cptest.Bearer(a.JWT), nil), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/"+k.ID, cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/"+k.ID, cptest.Bearer(m.JWT), nil), http.StatusForbidden, "forbidden")
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/"+k.ID, cptest.Bearer(adm.JWT), nil), http.StatusNoContent, "")
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/"+k.ID, cptest.Bearer(a.JWT), nil), http.StatusNotFound, "not_found")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(k.Key), nil), http.StatusUnauthorized, "unauthorized")

	if n := f.auditCount(t, a.Team, "api_key.create"); n != 4 {
		t.Fatalf("%d api_key.create entries, want 4", n)
	}
	if n := f.auditCount(t, a.Team, "api_key.delete"); n != 1 {
		t.Fatalf("%d api_key.delete entries, want 1", n)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_logs WHERE action = 'api_key.create' AND actor_type = 'user' AND actor_id = $1 AND resource_id = $2`, adm.User, k.ID); n != 1 {
		t.Fatal("api_key.create entry does not name its actor and key")
	}
}

func TestAPIKeysNeedTeam(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	noTeam := f.JWT(t, a.User, uuid.Nil, "")
	expect(t, f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(noTeam), nil), http.StatusForbidden, "no_team")
	expect(t, f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(noTeam), nil), http.StatusForbidden, "no_team")
	expect(t, f.Do(t, http.MethodDelete, "/v1/api-keys/"+ids.APIKey.Format(uuid.New()), cptest.Bearer(noTeam), nil), http.StatusForbidden, "no_team")

	// A removed member's JWT loses the team at once.
	b := f.NewAccount(t, "bob", false)
	m := f.member(t, b, "mallory", auth.RoleMember)
	expect(t, f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(m.JWT), nil), http.StatusOK, "")
	f.exec(t, `DELETE FROM team_members WHERE team_id = $1 AND user_id = $2`, b.Team, m.User)
	expect(t, f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(m.JWT), nil), http.StatusForbidden, "no_team")

	// A deactivated user's JWT is refused.
	f.exec(t, `UPDATE users SET status = 'disabled' WHERE id = $1`, a.User)
	expect(t, f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(a.JWT), nil), http.StatusForbidden, "account_deactivated")
}

// TestAPIKeysRevokedWithTheirCreator: removing a member, a member leaving, a deactivation and an
// account deletion revoke the keys the user created; other keys stay.
func TestAPIKeysRevokedWithTheirCreator(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	other := f.NewAccount(t, "olga", false)
	newKey := func(jwt string) string {
		t.Helper()
		res := f.Do(t, http.MethodPost, "/v1/api-keys", cptest.Bearer(jwt), map[string]string{"name": "k"})
		expect(t, res, http.StatusCreated, "")
		var k accounts.APIKey
		res.JSON(t, &k)
		return k.Key
	}
	works := func(key string) bool {
		return f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(key), nil).Status == http.StatusOK
	}

	removed := f.member(t, a, "rita", auth.RoleAdmin)
	leaver := f.member(t, a, "leo", auth.RoleAdmin)
	disabled := f.member(t, a, "dan", auth.RoleAdmin)
	f.AddMember(t, other.Team, disabled.User, auth.RoleAdmin)
	deleted := f.member(t, a, "dora", auth.RoleAdmin)
	keyRemoved, keyLeaver, keyDisabled, keyDeleted := newKey(removed.JWT), newKey(leaver.JWT), newKey(disabled.JWT), newKey(deleted.JWT)
	// dan's key in olga's team, made with a JWT for that team.
	keyDisabledOther := newKey(f.JWT(t, disabled.User, other.Team, auth.RoleAdmin))
	keyOwner := newKey(a.JWT)

	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID+"/members/"+removed.UserID, cptest.Bearer(a.JWT), nil), http.StatusNoContent, "")
	if works(keyRemoved) {
		t.Error("a removed member's key still works")
	}
	expect(t, f.Do(t, http.MethodPost, "/v1/teams/"+a.TeamID+"/leave", cptest.Bearer(leaver.JWT), nil), http.StatusNoContent, "")
	if works(keyLeaver) {
		t.Error("the key of a member who left still works")
	}
	root := f.NewAccount(t, "root", true)
	expect(t, f.Do(t, http.MethodPut, "/v1/admin/users/"+disabled.UserID+"/active", cptest.Bearer(root.JWT), map[string]bool{"active": false}), http.StatusNoContent, "")
	if works(keyDisabled) || works(keyDisabledOther) {
		t.Error("a deactivated user's keys still work")
	}
	f.setPassword(t, deleted.User, "dora password")
	expect(t, f.Do(t, http.MethodDelete, "/v1/me", cptest.Bearer(deleted.JWT), map[string]string{"confirmation": deleted.Email}), http.StatusNoContent, "")
	if works(keyDeleted) {
		t.Error("a deleted user's key still works")
	}
	if !works(keyOwner) || !works(a.APIKey) || !works(other.APIKey) {
		t.Error("keys of others were revoked")
	}
}
