package accounts_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMe(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)

	var me accounts.Me
	res := f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil)
	expect(t, res, http.StatusOK, "")
	res.JSON(t, &me)
	if me.Name != "alice" || me.Email != a.Email || me.HasPassword || me.Providers == nil || len(me.Providers) != 0 {
		t.Fatalf("GET /v1/me = %+v (%s)", me, res.Body)
	}
	if _, err := f.Store.CreateUserIdentity(context.Background(), db.CreateUserIdentityParams{UserID: a.User, Provider: "github", ProviderUserID: "42"}); err != nil {
		t.Fatal(err)
	}
	f.setPassword(t, a.User, "alice password")
	f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil).JSON(t, &me)
	if !me.HasPassword || !slices.Equal(me.Providers, []string{"github"}) {
		t.Fatalf("GET /v1/me = %+v", me)
	}

	res = f.Do(t, http.MethodPatch, "/v1/me", cptest.Bearer(a.JWT), map[string]string{"name": "  Alice Liddell "})
	expect(t, res, http.StatusOK, "")
	var ar accounts.AuthResponse
	res.JSON(t, &ar)
	claims, err := f.Signer.ParseUser(ar.Token)
	if err != nil || ar.Name != "Alice Liddell" || claims.Name != "Alice Liddell" || ar.TeamID != a.TeamID || claims.Role != auth.RoleOwner {
		t.Fatalf("PATCH /v1/me = %+v, claims %+v, %v", ar, claims, err)
	}
	f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(ar.Token), nil).JSON(t, &me)
	if me.Name != "Alice Liddell" {
		t.Fatalf("name after PATCH %q", me.Name)
	}
	for name, body := range map[string]any{
		"bad JSON": []byte("{"), "missing": map[string]string{}, "blank": map[string]string{"name": " "},
		"long": map[string]string{"name": strings.Repeat("é", 101)}, "wrong type": map[string]int{"name": 3},
	} {
		t.Run(name, func(t *testing.T) {
			expect(t, f.Do(t, http.MethodPatch, "/v1/me", cptest.Bearer(a.JWT), body), http.StatusBadRequest, "invalid_request")
		})
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodGet, "/v1/me", none, nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodPut, "/v1/me", cptest.Bearer(a.JWT), nil), http.StatusMethodNotAllowed, "method_not_allowed")
}

func TestUnlinkProvider(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false) // no password
	ctx := context.Background()
	for _, p := range []string{"github", "gitlab"} {
		if _, err := f.Store.CreateUserIdentity(ctx, db.CreateUserIdentityParams{UserID: a.User, Provider: p, ProviderUserID: p + "-1"}); err != nil {
			t.Fatal(err)
		}
	}
	expect(t, f.Do(t, http.MethodDelete, "/v1/me/providers/google", cptest.Bearer(a.JWT), nil), http.StatusNotFound, "not_found")
	expect(t, f.Do(t, http.MethodDelete, "/v1/me/providers/gitlab", cptest.Bearer(a.JWT), nil), http.StatusNoContent, "")
	expect(t, f.Do(t, http.MethodDelete, "/v1/me/providers/github", cptest.Bearer(a.JWT), nil), http.StatusBadRequest, "last_login_method")
	f.setPassword(t, a.User, "alice password")
	expect(t, f.Do(t, http.MethodDelete, "/v1/me/providers/github", cptest.Bearer(a.JWT), nil), http.StatusNoContent, "")
	if n := f.count(t, `SELECT count(*) FROM user_identities WHERE user_id = $1`, a.User); n != 0 {
		t.Fatalf("%d identities left", n)
	}
}

func TestChangePassword(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	// A change answers a fresh token for the same team: the session that changed the password
	// continues with it, every other session (the JWT it used included) ends.
	session := a.JWT
	change := func(body any) cptest.Response {
		res := f.Do(t, http.MethodPost, "/v1/me/password", cptest.Bearer(session), body)
		if res.Status == http.StatusOK {
			var ar accounts.AuthResponse
			res.JSON(t, &ar)
			if ar.Token == "" || ar.TeamID != a.TeamID || ar.UserID != a.UserID {
				t.Fatalf("password change answer %s", res.Body)
			}
			session = ar.Token
		}
		return res
	}
	login := func(pw string) int {
		return f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": a.Email, "password": pw}).Status
	}
	// Without a password, none is asked for.
	expect(t, change(map[string]string{"new_password": "first password"}), http.StatusOK, "")
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(session), nil), http.StatusOK, "")
	// API keys stay.
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(a.APIKey), nil), http.StatusOK, "")
	var other accounts.AuthResponse
	f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": a.Email, "password": "first password"}).JSON(t, &other)
	if login("first password") != http.StatusOK {
		t.Fatal("login with the first password failed")
	}
	expect(t, change(map[string]string{"new_password": "second password"}), http.StatusBadRequest, "invalid_request")
	expect(t, change(map[string]string{"current_password": "", "new_password": "second password"}), http.StatusBadRequest, "invalid_request")
	expect(t, change(map[string]string{"current_password": "not the password", "new_password": "second password"}), http.StatusUnauthorized, "wrong_password")
	expect(t, change(map[string]string{"current_password": "first password", "new_password": "second password", "confirm_password": "other"}),
		http.StatusBadRequest, "invalid_request")
	expect(t, change(map[string]string{"current_password": "first password", "new_password": "short"}), http.StatusBadRequest, "invalid_request")
	expect(t, change(map[string]string{"current_password": "first password"}), http.StatusBadRequest, "invalid_request")
	expect(t, change([]byte("[")), http.StatusBadRequest, "invalid_request")
	if login("first password") != http.StatusOK {
		t.Fatal("a rejected change altered the password")
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(other.Token), nil), http.StatusOK, "")
	expect(t, change(map[string]string{"current_password": "first password", "new_password": "second password", "confirm_password": "second password"}),
		http.StatusOK, "")
	if login("first password") != http.StatusUnauthorized || login("second password") != http.StatusOK {
		t.Fatal("password not changed")
	}
	// The other session (a login) ended; the changing one goes on.
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(other.Token), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(session), nil), http.StatusOK, "")
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password", cptest.Key(a.APIKey), map[string]string{"new_password": "x"}), http.StatusUnauthorized, "unauthorized")
}

func TestDeleteMe(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	b := f.member(t, a, "bob", auth.RoleMember) // bob is in alice's team (and owns his own)
	other := f.NewAccount(t, "carol", false)
	f.AddMember(t, other.Team, a.User, auth.RoleAdmin)
	f.setPassword(t, a.User, "alice password")
	del := func(jwt, confirmation string) cptest.Response {
		return f.Do(t, http.MethodDelete, "/v1/me", cptest.Bearer(jwt), map[string]string{"confirmation": confirmation})
	}

	expect(t, del(a.JWT, "someone@example.test"), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodDelete, "/v1/me", cptest.Bearer(a.JWT), []byte("{")), http.StatusBadRequest, "invalid_request")
	expect(t, del(a.JWT, strings.ToUpper(a.Email)), http.StatusConflict, "owns_team_with_members")
	if u := f.user(t, a.User); u.Status != "active" {
		t.Fatalf("refused deletion changed status to %s", u.Status)
	}

	expect(t, f.Do(t, http.MethodDelete, "/v1/teams/"+a.TeamID+"/members/"+b.UserID, cptest.Bearer(a.JWT), nil), http.StatusNoContent, "")
	f.exec(t, `INSERT INTO capsules (team_id, template_name, status, vcpus, memory_mb) VALUES ($1, 'minimal', 'running', 1, 512)`, a.Team)
	expect(t, del(a.JWT, " "+a.Email+" "), http.StatusNoContent, "")

	u := f.user(t, a.User)
	if u.Status != "deleted" || u.DeletedAt == nil {
		t.Fatalf("deleted user %+v", u)
	}
	// Its own team is deleted with its capsules; it left carol's team.
	if !f.caps.called(a.Team) || f.caps.called(other.Team) {
		t.Fatalf("destroyer called for %v", f.caps.list())
	}
	if n := f.count(t, `SELECT count(*) FROM teams WHERE id = $1 AND deleted_at IS NOT NULL`, a.Team); n != 1 {
		t.Fatal("sole-owned team not deleted")
	}
	if n := f.count(t, `SELECT count(*) FROM capsules WHERE team_id = $1 AND status <> 'stopped'`, a.Team); n != 0 {
		t.Fatal("capsules of the deleted team still live")
	}
	if n := f.count(t, `SELECT count(*) FROM team_members WHERE team_id = $1 AND user_id = $2`, other.Team, a.User); n != 0 {
		t.Fatal("deleted user is still a member of another team")
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil), http.StatusForbidden, "account_deactivated")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(a.APIKey), nil), http.StatusUnauthorized, "unauthorized")
	res := f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": a.Email, "password": "alice password"})
	expect(t, res, http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody(a.Email, "Again")), http.StatusConflict, "email_taken")

	// Purged after 15 days.
	if err := f.svc.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, `SELECT count(*) FROM users WHERE id = $1`, a.User); n != 1 {
		t.Fatal("deleted user purged before 15 days")
	}
	f.exec(t, `UPDATE users SET deleted_at = now() - interval '16 days' WHERE id = $1`, a.User)
	if err := f.svc.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, `SELECT count(*) FROM users WHERE id = $1`, a.User); n != 0 {
		t.Fatal("deleted user not purged after 16 days")
	}
	// Bob is untouched.
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(f.JWT(t, b.User, b.Team, auth.RoleOwner)), nil), http.StatusOK, "")
}

func TestRunPurges(t *testing.T) {
	env := cptest.New(t)
	svc, err := accounts.New(accounts.Config{Store: env.Store, Signer: env.Signer, DashboardURL: dashboard,
		Capsules: &recordingDestroyer{env: env}, PurgeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	old := env.NewAccount(t, "old", false)
	recent := env.NewAccount(t, "recent", false)
	pool := env.Store.Pool()
	for _, q := range []string{
		`UPDATE users SET status = 'deleted', deleted_at = now() - interval '16 days' WHERE id = '` + old.User.String() + `'`,
		`UPDATE users SET status = 'deleted', deleted_at = now() - interval '14 days' WHERE id = '` + recent.User.String() + `'`,
		`INSERT INTO one_time_tokens (kind, user_id, token_hash, created_at, expires_at) VALUES
		   ('activation', '` + recent.User.String() + `', repeat('a', 64), now() - interval '2 hours', now() - interval '1 hour'),
		   ('password_reset', '` + recent.User.String() + `', repeat('b', 64), now(), now() + interval '15 minutes')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var users, tokens int
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM users WHERE id = $1), (SELECT count(*) FROM one_time_tokens WHERE kind = 'activation')`, old.User).Scan(&users, &tokens); err != nil {
			t.Fatal(err)
		}
		if users == 0 && tokens == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d old deleted users, %d expired tokens left", users, tokens)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM users WHERE id = $1`, recent.User).Scan(&left); err != nil || left != 1 {
		t.Fatalf("user deleted 14 days ago purged (%d, %v)", left, err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM one_time_tokens WHERE kind = 'password_reset'`).Scan(&left); err != nil || left != 1 {
		t.Fatalf("live token purged (%d, %v)", left, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestNewValidation(t *testing.T) {
	env := cptest.New(t)
	caps := &recordingDestroyer{env: env}
	for name, cfg := range map[string]accounts.Config{
		"no store":      {Signer: env.Signer, Capsules: caps, DashboardURL: dashboard},
		"no signer":     {Store: env.Store, Capsules: caps, DashboardURL: dashboard},
		"no capsules":   {Store: env.Store, Signer: env.Signer, DashboardURL: dashboard},
		"no dashboard":  {Store: env.Store, Signer: env.Signer, Capsules: caps},
		"relative URL":  {Store: env.Store, Signer: env.Signer, Capsules: caps, DashboardURL: "/dash"},
		"ftp dashboard": {Store: env.Store, Signer: env.Signer, Capsules: caps, DashboardURL: "ftp://x.test"},
	} {
		if _, err := accounts.New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
}

// TestLastAdminStays: the last active platform admin cannot delete their account (and cannot
// deactivate themselves, as no admin can); with a second admin they can.
func TestLastAdminStays(t *testing.T) {
	f := newFixture(t)
	root := f.NewAccount(t, "root", true)
	del := func(a cptest.Account) cptest.Response {
		return f.Do(t, http.MethodDelete, "/v1/me", cptest.Bearer(a.JWT), map[string]string{"confirmation": a.Email})
	}
	expect(t, del(root), http.StatusConflict, "conflict")
	expect(t, f.Do(t, http.MethodPut, "/v1/admin/users/"+root.UserID+"/active", cptest.Bearer(root.JWT), map[string]bool{"active": false}),
		http.StatusBadRequest, "invalid_request")
	if u := f.user(t, root.User); u.Status != "active" || !u.IsAdmin {
		t.Fatalf("last admin changed: %+v", u)
	}
	second := f.NewAccount(t, "second", true)
	expect(t, del(root), http.StatusNoContent, "")
	expect(t, del(second), http.StatusConflict, "conflict")
}
