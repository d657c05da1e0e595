package accounts_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

var none cptest.Cred

func signupBody(email, name string) map[string]string {
	return map[string]string{"email": email, "password": "correct horse", "name": name}
}

// signupAndActivate signs up, activates through the mailed link and returns the AuthResponse.
func (f *fixture) signupAndActivate(t *testing.T, email, name string) accounts.AuthResponse {
	t.Helper()
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody(email, name)), http.StatusCreated, "")
	tok := tokenOf(t, f.mailer.next(t), "/activate")
	res := f.Do(t, http.MethodPost, "/v1/auth/activate", none, map[string]string{"token": tok})
	expect(t, res, http.StatusOK, "")
	var ar accounts.AuthResponse
	res.JSON(t, &ar)
	return ar
}

func TestSignupActivateLogin(t *testing.T) {
	f := newFixture(t)

	res := f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody(" Ada@Example.TEST ", "  Ada  "))
	expect(t, res, http.StatusCreated, "")
	var created struct{ Message string }
	res.JSON(t, &created)
	if created.Message != "Account created. Please check your email to activate your account." {
		t.Fatalf("signup message %q", created.Message)
	}
	msg := f.mailer.next(t)
	if msg.To != "ada@example.test" || !strings.Contains(msg.Subject, "Activate") {
		t.Fatalf("activation mail to %q subject %q", msg.To, msg.Subject)
	}
	tok := tokenOf(t, msg, "/activate")
	if !auth.ActivationToken.Valid(tok) {
		t.Fatalf("activation token %q is not 32 hex", tok)
	}

	login := map[string]string{"email": "ada@example.test", "password": "correct horse"}
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, login), http.StatusForbidden, "account_not_activated")
	// A wrong password never reveals the account's state.
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": "ada@example.test", "password": "wrong password"}),
		http.StatusUnauthorized, "unauthorized")

	res = f.Do(t, http.MethodPost, "/v1/auth/activate", none, map[string]string{"token": tok})
	expect(t, res, http.StatusOK, "")
	var ar accounts.AuthResponse
	res.JSON(t, &ar)
	if ar.Token == "" || ar.Email != "ada@example.test" || ar.Name != "Ada" || !strings.HasPrefix(ar.UserID, "usr-") || !strings.HasPrefix(ar.TeamID, "team-") {
		t.Fatalf("activation AuthResponse %+v", ar)
	}
	claims, err := f.Signer.ParseUser(ar.Token)
	if err != nil || claims.TeamID != ar.TeamID || claims.Role != auth.RoleOwner || claims.IsAdmin {
		t.Fatalf("activation JWT claims %+v, %v; want owner of %s, not admin", claims, err, ar.TeamID)
	}
	// Even the first user ever activated is not a platform admin: only the bootstrap or another admin
	// makes admins.
	if u := f.user(t, parseUser(t, ar.UserID)); u.IsAdmin || u.Status != "active" {
		t.Fatalf("first activated user: admin=%v status=%s", u.IsAdmin, u.Status)
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/admin/users", cptest.Bearer(ar.Token), nil), http.StatusForbidden, "forbidden")

	// Default team "<name>'s Team", owned.
	res = f.Do(t, http.MethodGet, "/v1/teams", cptest.Bearer(ar.Token), nil)
	expect(t, res, http.StatusOK, "")
	var teams []accounts.Team
	res.JSON(t, &teams)
	if len(teams) != 1 || teams[0].ID != ar.TeamID || teams[0].Name != "Ada's Team" || teams[0].Role != "owner" {
		t.Fatalf("teams after activation %+v", teams)
	}

	// The link works once.
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/activate", none, map[string]string{"token": tok}), http.StatusBadRequest, "already_activated")

	res = f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": "ADA@example.test", "password": "correct horse"})
	expect(t, res, http.StatusOK, "")
	var lr accounts.AuthResponse
	res.JSON(t, &lr)
	if lr.UserID != ar.UserID || lr.TeamID != ar.TeamID || lr.Name != "Ada" {
		t.Fatalf("login AuthResponse %+v, activation %+v", lr, ar)
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(lr.Token), nil), http.StatusOK, "")

	// The second user is not admin.
	br := f.signupAndActivate(t, "bob@example.test", "Bob")
	if u := f.user(t, parseUser(t, br.UserID)); u.IsAdmin {
		t.Fatal("second activated user became admin")
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/admin/users", cptest.Bearer(br.Token), nil), http.StatusForbidden, "forbidden")
}

func TestActivateErrors(t *testing.T) {
	f := newFixture(t)
	for name, tc := range map[string]struct {
		body       any
		status     int
		code, text string
	}{
		"bad JSON":   {[]byte(`{"token":`), 400, "invalid_request", "invalid JSON body"},
		"empty":      {[]byte(``), 400, "invalid_request", "invalid JSON body"},
		"missing":    {map[string]string{}, 400, "invalid_request", "token is required"},
		"malformed":  {map[string]string{"token": "nope"}, 400, "invalid_token", ""},
		"unknown":    {map[string]string{"token": strings.Repeat("ab", 16)}, 400, "invalid_token", ""},
		"reset kind": {map[string]string{"token": strings.Repeat("ab", 32)}, 400, "invalid_token", ""},
	} {
		t.Run(name, func(t *testing.T) {
			res := f.Do(t, http.MethodPost, "/v1/auth/activate", none, tc.body)
			expect(t, res, tc.status, tc.code)
			if tc.text != "" && message(t, res) != tc.text {
				t.Fatalf("message %q, want %q", message(t, res), tc.text)
			}
		})
	}
}

func TestSignupValidation(t *testing.T) {
	f := newFixture(t)
	taken := f.NewAccount(t, "taken", false)
	long := strings.Repeat("x", 101)
	for name, tc := range map[string]struct {
		body any
		code string
	}{
		"bad JSON":       {[]byte(`{"email":1`), "invalid_request"},
		"wrong type":     {map[string]any{"email": 1, "password": "correct horse", "name": "A"}, "invalid_request"},
		"no email":       {map[string]string{"password": "correct horse", "name": "A"}, "invalid_request"},
		"bad email":      {signupBody("not-an-email", "A"), "invalid_request"},
		"no password":    {map[string]string{"email": "a@example.test", "name": "A"}, "invalid_request"},
		"short password": {map[string]string{"email": "a@example.test", "password": "short", "name": "A"}, "invalid_request"},
		"no name":        {map[string]string{"email": "a@example.test", "password": "correct horse"}, "invalid_request"},
		"blank name":     {signupBody("a@example.test", "   "), "invalid_request"},
		"long name":      {signupBody("a@example.test", long), "invalid_request"},
		"email taken":    {signupBody(strings.ToUpper(taken.Email), "Taken"), "email_taken"},
	} {
		t.Run(name, func(t *testing.T) {
			res := f.Do(t, http.MethodPost, "/v1/auth/signup", none, tc.body)
			want := http.StatusBadRequest
			if tc.code == "email_taken" {
				want = http.StatusConflict
			}
			expect(t, res, want, tc.code)
		})
	}
	if n := f.count(t, `SELECT count(*) FROM users WHERE email = 'a@example.test'`); n != 0 {
		t.Fatalf("invalid signups created %d users", n)
	}
	f.mailer.none(t)
}

func TestSignupCooldown(t *testing.T) {
	f := newFixture(t)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody("cy@example.test", "Cy")), http.StatusCreated, "")
	oldTok := tokenOf(t, f.mailer.next(t), "/activate")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody("cy@example.test", "Cy")), http.StatusConflict, "signup_cooldown")
	f.mailer.none(t)

	// An inactive signup older than 30 minutes is replaced.
	f.exec(t, `UPDATE users SET created_at = now() - interval '31 minutes' WHERE email = 'cy@example.test'`)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody("cy@example.test", "Cy Two")), http.StatusCreated, "")
	newTok := tokenOf(t, f.mailer.next(t), "/activate")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/activate", none, map[string]string{"token": oldTok}), http.StatusBadRequest, "invalid_token")
	res := f.Do(t, http.MethodPost, "/v1/auth/activate", none, map[string]string{"token": newTok})
	expect(t, res, http.StatusOK, "")
	var ar accounts.AuthResponse
	res.JSON(t, &ar)
	if ar.Name != "Cy Two" {
		t.Fatalf("activated %+v, want the new signup", ar)
	}
}

func TestActivationTokenExpires(t *testing.T) {
	f := newFixture(t)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody("exp@example.test", "Exp")), http.StatusCreated, "")
	tok := tokenOf(t, f.mailer.next(t), "/activate")
	f.exec(t, `UPDATE one_time_tokens SET created_at = now() - interval '31 minutes', expires_at = now() - interval '1 minute'`)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/activate", none, map[string]string{"token": tok}), http.StatusBadRequest, "invalid_token")
}

func TestSignupMailFailureLeavesNothing(t *testing.T) {
	f := newFixture(t)
	f.mailer.setFail(errMailDown)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody("dee@example.test", "Dee")), http.StatusInternalServerError, "internal_error")
	if n := f.count(t, `SELECT count(*) FROM users WHERE email = 'dee@example.test'`); n != 0 {
		t.Fatalf("failed signup left %d users", n)
	}
	f.mailer.setFail(nil)
	// No cooldown: nothing was created.
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/signup", none, signupBody("dee@example.test", "Dee")), http.StatusCreated, "")
	tokenOf(t, f.mailer.next(t), "/activate")
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	f.setPassword(t, a.User, "alice password")
	ok := map[string]string{"email": a.Email, "password": "alice password"}

	res := f.Do(t, http.MethodPost, "/v1/auth/login", none, ok)
	expect(t, res, http.StatusOK, "")
	var ar accounts.AuthResponse
	res.JSON(t, &ar)
	if ar.UserID != a.UserID || ar.TeamID != a.TeamID || ar.Email != a.Email {
		t.Fatalf("login %+v, want user %s team %s", ar, a.UserID, a.TeamID)
	}
	res = f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Bearer(ar.Token), nil)
	expect(t, res, http.StatusOK, "")

	for name, tc := range map[string]struct {
		body   any
		status int
		code   string
	}{
		"bad JSON":         {[]byte(`nope`), 400, "invalid_request"},
		"missing password": {map[string]string{"email": a.Email}, 400, "invalid_request"},
		"missing email":    {map[string]string{"password": "x"}, 400, "invalid_request"},
		"unknown email":    {map[string]string{"email": "ghost@example.test", "password": "alice password"}, 401, "unauthorized"},
		"wrong password":   {map[string]string{"email": a.Email, "password": "not it at all"}, 401, "unauthorized"},
	} {
		t.Run(name, func(t *testing.T) {
			res := f.Do(t, http.MethodPost, "/v1/auth/login", none, tc.body)
			expect(t, res, tc.status, tc.code)
			if tc.status == 401 && message(t, res) != "invalid email or password" {
				t.Fatalf("message %q", message(t, res))
			}
		})
	}

	// An account without a password cannot log in with one.
	b := f.NewAccount(t, "nopass", false)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": b.Email, "password": "anything long"}),
		http.StatusUnauthorized, "unauthorized")

	f.exec(t, `UPDATE users SET status = 'disabled' WHERE id = $1`, a.User)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, ok), http.StatusForbidden, "account_disabled")
	f.exec(t, `UPDATE users SET status = 'deleted', deleted_at = now() WHERE id = $1`, a.User)
	res = f.Do(t, http.MethodPost, "/v1/auth/login", none, ok)
	expect(t, res, http.StatusUnauthorized, "unauthorized")
	if message(t, res) != "invalid email or password" {
		t.Fatalf("deleted account login message %q", message(t, res))
	}
}

func TestLoginWithoutTeam(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "loner", false)
	f.setPassword(t, a.User, "loner password")
	f.exec(t, `DELETE FROM team_members WHERE user_id = $1`, a.User)
	res := f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": a.Email, "password": "loner password"})
	expect(t, res, http.StatusOK, "")
	var ar accounts.AuthResponse
	res.JSON(t, &ar)
	if ar.TeamID != "" {
		t.Fatalf("team_id %q for a user without a team", ar.TeamID)
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Bearer(ar.Token), nil), http.StatusForbidden, "no_team")
	expect(t, f.Do(t, http.MethodGet, "/v1/api-keys", cptest.Bearer(ar.Token), nil), http.StatusForbidden, "no_team")
	res = f.Do(t, http.MethodPatch, "/v1/me", cptest.Bearer(ar.Token), map[string]string{"name": "Lone"})
	expect(t, res, http.StatusOK, "")
	res.JSON(t, &ar)
	if ar.TeamID != "" || ar.Name != "Lone" {
		t.Fatalf("PATCH /v1/me without a team: %+v", ar)
	}
	// Creating a team works without one.
	expect(t, f.Do(t, http.MethodPost, "/v1/teams", cptest.Bearer(ar.Token), map[string]string{"name": "Fresh"}), http.StatusCreated, "")
}

func TestSwitchTeam(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	b := f.NewAccount(t, "bob", false)
	c := f.NewAccount(t, "carol", false)
	f.AddMember(t, b.Team, a.User, auth.RoleMember)

	res := f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(a.JWT), map[string]string{"team_id": b.TeamID})
	expect(t, res, http.StatusOK, "")
	var ar accounts.AuthResponse
	res.JSON(t, &ar)
	claims, err := f.Signer.ParseUser(ar.Token)
	if err != nil || ar.TeamID != b.TeamID || claims.TeamID != b.TeamID || claims.Role != auth.RoleMember || ar.UserID != a.UserID {
		t.Fatalf("switch-team %+v claims %+v %v", ar, claims, err)
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/teams/"+b.TeamID, cptest.Bearer(ar.Token), nil), http.StatusOK, "")
	expect(t, f.Do(t, http.MethodGet, "/v1/teams/"+b.TeamID, cptest.Bearer(a.JWT), nil), http.StatusForbidden, "forbidden")

	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(a.JWT), map[string]string{"team_id": c.TeamID}), http.StatusForbidden, "forbidden")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(a.JWT), map[string]string{"team_id": ids.Team.Format(uuid.New())}),
		http.StatusNotFound, "not_found")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(a.JWT), map[string]string{"team_id": "cl-abc"}), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(a.JWT), map[string]string{}), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(a.JWT), []byte("{")), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Key(a.APIKey), map[string]string{"team_id": b.TeamID}), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", none, map[string]string{"team_id": b.TeamID}), http.StatusUnauthorized, "unauthorized")

	// A deleted team is not found.
	f.exec(t, `UPDATE teams SET deleted_at = now() WHERE id = $1`, b.Team)
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/switch-team", cptest.Bearer(a.JWT), map[string]string{"team_id": b.TeamID}), http.StatusNotFound, "not_found")
}

func TestPasswordReset(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	f.setPassword(t, a.User, "old password")
	inactive := f.NewAccount(t, "sleepy", false)
	f.exec(t, `UPDATE users SET status = 'inactive' WHERE id = $1`, inactive.User)

	// 204 whether or not the account exists; mail only for an active account.
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{"email": "ghost@example.test"}), http.StatusNoContent, "")
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{"email": inactive.Email}), http.StatusNoContent, "")
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{"email": strings.ToUpper(a.Email)}), http.StatusNoContent, "")
	msg := f.mailer.next(t)
	if msg.To != a.Email {
		t.Fatalf("reset mail to %q, want %q", msg.To, a.Email)
	}
	f.mailer.none(t)
	tok := tokenOf(t, msg, "/reset-password")
	if !auth.PasswordResetToken.Valid(tok) {
		t.Fatalf("reset token %q is not 64 hex", tok)
	}
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, []byte("{")), http.StatusBadRequest, "invalid_request")
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{}), http.StatusBadRequest, "invalid_request")

	confirm := func(token, pw string) cptest.Response {
		return f.Do(t, http.MethodPost, "/v1/me/password/reset/confirm", none, map[string]string{"token": token, "new_password": pw})
	}
	expect(t, confirm(strings.Repeat("0", 64), "new password"), http.StatusBadRequest, "invalid_token")
	expect(t, confirm("short", "new password"), http.StatusBadRequest, "invalid_token")
	expect(t, confirm("", "new password"), http.StatusBadRequest, "invalid_request")
	expect(t, confirm(tok, "short"), http.StatusBadRequest, "invalid_request") // the token is not used up
	expect(t, confirm(tok, ""), http.StatusBadRequest, "invalid_request")
	expect(t, confirm(tok, "new password"), http.StatusNoContent, "")
	expect(t, confirm(tok, "newer password"), http.StatusBadRequest, "invalid_token")

	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": a.Email, "password": "old password"}), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": a.Email, "password": "new password"}), http.StatusOK, "")
	// Every session ends (API keys stay).
	expect(t, f.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil), http.StatusUnauthorized, "unauthorized")
	expect(t, f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(a.APIKey), nil), http.StatusOK, "")

	// A second request replaces the first token.
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{"email": a.Email}), http.StatusNoContent, "")
	first := tokenOf(t, f.mailer.next(t), "/reset-password")
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{"email": a.Email}), http.StatusNoContent, "")
	second := tokenOf(t, f.mailer.next(t), "/reset-password")
	expect(t, confirm(first, "third password"), http.StatusBadRequest, "invalid_token")
	expect(t, confirm(second, "third password"), http.StatusNoContent, "")

	// Expired tokens do not work; a failing mailer still answers 204.
	f.mailer.setFail(errMailDown)
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{"email": a.Email}), http.StatusNoContent, "")
}

func TestPasswordResetTokenExpires(t *testing.T) {
	f := newFixture(t)
	a := f.NewAccount(t, "alice", false)
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset", none, map[string]string{"email": a.Email}), http.StatusNoContent, "")
	tok := tokenOf(t, f.mailer.next(t), "/reset-password")
	f.exec(t, `UPDATE one_time_tokens SET created_at = now() - interval '16 minutes', expires_at = now() - interval '1 minute'`)
	expect(t, f.Do(t, http.MethodPost, "/v1/me/password/reset/confirm", none, map[string]string{"token": tok, "new_password": "new password"}),
		http.StatusBadRequest, "invalid_token")
}

func TestBootstrap(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := accounts.Bootstrap(ctx, f.Store, " Root@Example.TEST", "root password", "Root")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.UserID, "usr-") || !strings.HasPrefix(res.TeamID, "team-") || !auth.IsAPIKey(res.APIKey) {
		t.Fatalf("Bootstrap = %+v", res)
	}
	u := f.user(t, parseUser(t, res.UserID))
	if !u.IsAdmin || u.Status != "active" || u.Email != "root@example.test" || u.ActivatedAt == nil {
		t.Fatalf("bootstrap user %+v", u)
	}
	r := f.Do(t, http.MethodPost, "/v1/auth/login", none, map[string]string{"email": "root@example.test", "password": "root password"})
	expect(t, r, http.StatusOK, "")
	var ar accounts.AuthResponse
	r.JSON(t, &ar)
	if ar.TeamID != res.TeamID {
		t.Fatalf("login team %s, bootstrap team %s", ar.TeamID, res.TeamID)
	}
	expect(t, f.Do(t, http.MethodGet, "/v1/admin/users", cptest.Bearer(ar.Token), nil), http.StatusOK, "")
	r = f.Do(t, http.MethodGet, "/v1/capsules/probe", cptest.Key(res.APIKey), nil)
	expect(t, r, http.StatusOK, "")
	var probe map[string]string
	r.JSON(t, &probe)
	if probe["team_id"] != res.TeamID {
		t.Fatalf("bootstrap key acts for %s, want %s", probe["team_id"], res.TeamID)
	}
	r = f.Do(t, http.MethodGet, "/v1/teams", cptest.Bearer(ar.Token), nil)
	var teams []accounts.Team
	r.JSON(t, &teams)
	if len(teams) != 1 || teams[0].Name != "Root's Team" || teams[0].Role != "owner" {
		t.Fatalf("bootstrap teams %+v", teams)
	}

	// A later signup activation does not make another admin.
	br := f.signupAndActivate(t, "second@example.test", "Second")
	if f.user(t, parseUser(t, br.UserID)).IsAdmin {
		t.Fatal("user activated after bootstrap became admin")
	}

	_, err = accounts.Bootstrap(ctx, f.Store, "root@example.test", "other password", "Again")
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second Bootstrap = %v, want an email-taken error", err)
	}
	for _, tc := range []struct{ email, pw, name string }{
		{"bad", "root password", "X"}, {"x@example.test", "short", "X"}, {"x@example.test", "", "X"}, {"x@example.test", "root password", ""},
	} {
		if _, err := accounts.Bootstrap(ctx, f.Store, tc.email, tc.pw, tc.name); err == nil || strings.Contains(err.Error(), "(400)") {
			t.Errorf("Bootstrap(%q, %q, %q) = %v, want a plain validation error", tc.email, tc.pw, tc.name, err)
		}
	}
	if n := f.count(t, `SELECT count(*) FROM users WHERE email = 'x@example.test'`); n != 0 {
		t.Fatal("invalid bootstrap created a user")
	}
}
