package accounts_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/fakegithub"
)

type ghUser = fakegithub.User

type oauthFixture struct {
	*fixture
	gh *fakegithub.Server
}

func newOAuthFixture(t *testing.T) *oauthFixture {
	t.Helper()
	gh := fakegithub.New(t)
	p, err := accounts.NewGitHub(accounts.GitHubConfig{
		ClientID: fakegithub.ClientID, ClientSecret: fakegithub.ClientSecret,
		AuthURL: gh.AuthURL(), TokenURL: gh.TokenURL(), APIURL: gh.APIURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureEnv(t, func(env *cptest.Env, c *accounts.Config) {
		c.Providers = []accounts.Provider{p}
		c.OAuthKey = []byte("oauth-test-key-0123456789abcdefghijklmnop")
		c.PublicURL = env.Server.URL
	})
	return &oauthFixture{fixture: f, gh: gh}
}

// browser is a cookie-keeping client that follows redirects until the dashboard.
func browser(t *testing.T) *http.Client { return fakegithub.Browser(t, dashboard+"/") }

// land runs req in b and returns the dashboard URL the flow ends at.
func land(t *testing.T, b *http.Client, req *http.Request) *url.URL {
	t.Helper()
	return fakegithub.Land(t, b, req, dashboard+"/")
}

func get(t *testing.T, u string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// signIn walks the sign-in flow as u in a new browser and returns the dashboard callback URL.
func (o *oauthFixture) signIn(t *testing.T, u ghUser) *url.URL {
	t.Helper()
	o.gh.As(u)
	return o.start(t)
}

// start walks the sign-in flow in a new browser as the fake GitHub is set up.
func (o *oauthFixture) start(t *testing.T) *url.URL {
	t.Helper()
	return land(t, browser(t), get(t, o.Server.URL+"/auth/oauth/github"))
}

// signedIn checks a successful sign-in callback and returns its AuthResponse.
func signedIn(t *testing.T, loc *url.URL) accounts.AuthResponse {
	t.Helper()
	q := loc.Query()
	if loc.Path != "/auth/github/callback" || q.Get("error") != "" || q.Get("token") == "" {
		t.Fatalf("sign-in landed at %s", loc)
	}
	return accounts.AuthResponse{Token: q.Get("token"), UserID: q.Get("user_id"), TeamID: q.Get("team_id"), Email: q.Get("email"), Name: q.Get("name")}
}

func failed(t *testing.T, loc *url.URL, reason string) {
	t.Helper()
	if loc.Path != "/auth/github/callback" || loc.Query().Get("error") != reason || loc.Query().Get("token") != "" {
		t.Fatalf("landed at %s, want error=%s", loc, reason)
	}
}

var octocat = ghUser{ID: 583231, Login: "octocat", Name: "The Octocat", Email: "Octocat@Example.test", Verified: true}

func TestOAuthProvidersAndRoutes(t *testing.T) {
	plain := newFixture(t)
	var got struct{ Providers []string }
	res := plain.Do(t, http.MethodGet, "/v1/auth/providers", cptest.Cred{}, nil)
	res.JSON(t, &got)
	if res.Status != http.StatusOK || got.Providers == nil || len(got.Providers) != 0 {
		t.Fatalf("providers without OAuth: %d %s", res.Status, res.Body)
	}
	a := plain.NewAccount(t, "alice", false)
	expect(t, plain.Do(t, http.MethodGet, "/auth/oauth/github", cptest.Cred{}, nil), http.StatusNotFound, "not_found")
	expect(t, plain.Do(t, http.MethodGet, "/v1/auth/oauth/github/callback", cptest.Cred{}, nil), http.StatusNotFound, "not_found")
	expect(t, plain.Do(t, http.MethodGet, "/v1/me/providers/github/connect", cptest.Bearer(a.JWT), nil), http.StatusNotFound, "not_found")

	o := newOAuthFixture(t)
	o.Do(t, http.MethodGet, "/v1/auth/providers", cptest.Cred{}, nil).JSON(t, &got)
	if len(got.Providers) != 1 || got.Providers[0] != "github" {
		t.Fatalf("providers %v", got.Providers)
	}
	b := o.NewAccount(t, "bob", false)
	expect(t, o.Do(t, http.MethodGet, "/auth/oauth/gitlab", cptest.Cred{}, nil), http.StatusNotFound, "not_found")
	expect(t, o.Do(t, http.MethodGet, "/v1/auth/oauth/gitlab/callback?state=x&code=y", cptest.Cred{}, nil), http.StatusNotFound, "not_found")
	expect(t, o.Do(t, http.MethodGet, "/v1/me/providers/gitlab/connect", cptest.Bearer(b.JWT), nil), http.StatusNotFound, "not_found")
	expect(t, o.Do(t, http.MethodGet, "/v1/me/providers/github/connect", cptest.Cred{}, nil), http.StatusUnauthorized, "unauthorized")
	expect(t, o.Do(t, http.MethodGet, "/v1/me/providers/github/connect", cptest.Key(b.APIKey), nil), http.StatusUnauthorized, "unauthorized")

	// The start: a 302 to the provider with a state cookie as docs/api.md describes.
	for _, prefix := range []string{"/auth/oauth/github", "/v1/auth/oauth/github"} {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := c.Get(o.Server.URL + prefix)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		loc, _ := res.Location()
		if res.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), o.gh.AuthURL()+"?") {
			t.Fatalf("GET %s: %d to %v", prefix, res.StatusCode, loc)
		}
		q := loc.Query()
		if q.Get("redirect_uri") != o.Server.URL+"/auth/oauth/github/callback" || q.Get("client_id") != fakegithub.ClientID {
			t.Fatalf("authorization URL %s", loc)
		}
		var state *http.Cookie
		for _, c := range res.Cookies() {
			if c.Name == "oauth_state" {
				state = c
			}
		}
		if state == nil || state.MaxAge != 600 || !state.HttpOnly || state.SameSite != http.SameSiteLaxMode || state.Path != "/" {
			t.Fatalf("state cookie %+v", state)
		}
		nonce, sum, ok := strings.Cut(state.Value, ":")
		if !ok || nonce != q.Get("state") || len(sum) != 64 {
			t.Fatalf("state cookie %q for state %q", state.Value, q.Get("state"))
		}
	}
}

func TestOAuthSignIn(t *testing.T) {
	o := newOAuthFixture(t)
	ctx := context.Background()

	// A first sign-in creates an active account (not an admin) with its own team, linked to GitHub.
	first := signedIn(t, o.signIn(t, octocat))
	uid := parseUser(t, first.UserID)
	u := o.user(t, uid)
	if u.Status != "active" || u.IsAdmin || u.PasswordHash != nil || u.Email != "octocat@example.test" || u.Name != "The Octocat" ||
		first.Email != u.Email || first.Name != u.Name {
		t.Fatalf("created user %+v, answer %+v", u, first)
	}
	team, err := o.Store.GetTeam(ctx, parseTeam(t, first.TeamID))
	if err != nil || team.Name != "The Octocat's Team" {
		t.Fatalf("team %+v, %v", team, err)
	}
	claims, err := o.Signer.ParseUser(first.Token)
	if err != nil || claims.UserID != first.UserID || claims.TeamID != first.TeamID || claims.Role != auth.RoleOwner || claims.IsAdmin {
		t.Fatalf("token claims %+v, %v", claims, err)
	}
	var me accounts.Me
	res := o.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(first.Token), nil)
	res.JSON(t, &me)
	if res.Status != http.StatusOK || me.HasPassword || len(me.Providers) != 1 || me.Providers[0] != "github" {
		t.Fatalf("GET /v1/me %d %s", res.Status, res.Body)
	}

	// A second sign-in (new browser, other name and email at GitHub) is the same account.
	again := octocat
	again.Name, again.Email = "Renamed", "new-address@example.test"
	second := signedIn(t, o.signIn(t, again))
	if second.UserID != first.UserID || second.TeamID != first.TeamID {
		t.Fatalf("second sign-in %+v, first %+v", second, first)
	}
	if n := o.count(t, `SELECT count(*) FROM users`); n != 1 {
		t.Fatalf("%d users after two sign-ins", n)
	}

	// The only sign-in method cannot be unlinked.
	expect(t, o.Do(t, http.MethodDelete, "/v1/me/providers/github", cptest.Bearer(first.Token), nil), http.StatusBadRequest, "last_login_method")

	// A disabled or deleted account cannot sign in.
	for _, status := range []string{"disabled", "deleted"} {
		if _, err := o.Store.SetUserStatus(ctx, db.SetUserStatusParams{Status: status, ID: uid}); err != nil {
			t.Fatal(err)
		}
		failed(t, o.signIn(t, octocat), "account_deactivated")
	}
	if _, err := o.Store.SetUserStatus(ctx, db.SetUserStatusParams{Status: "active", ID: uid}); err != nil {
		t.Fatal(err)
	}
	signedIn(t, o.signIn(t, octocat))

	// Every authorization returned to the public URL's callback.
	for _, r := range o.gh.Redirects() {
		if r != o.Server.URL+"/auth/oauth/github/callback" {
			t.Fatalf("redirect_uri %q", r)
		}
	}
}

func TestOAuthSignInByEmail(t *testing.T) {
	o := newOAuthFixture(t)
	ctx := context.Background()
	a := o.NewAccount(t, "alice", false)
	o.setPassword(t, a.User, "alice password")

	// Unverified: no account is found or created from the email.
	gh := ghUser{ID: 7, Login: "alice-gh", Email: strings.ToUpper(a.Email), Verified: false}
	failed(t, o.signIn(t, gh), "exchange_failed")
	if n := o.count(t, `SELECT count(*) FROM user_identities`); n != 0 {
		t.Fatalf("%d identities after an unverified sign-in", n)
	}

	// Verified primary email of an existing account: signed in to it, GitHub linked.
	gh.Verified = true
	res := signedIn(t, o.signIn(t, gh))
	if res.UserID != a.UserID || res.TeamID != a.TeamID {
		t.Fatalf("signed in as %+v, want alice %s", res, a.UserID)
	}
	idents, err := o.Store.ListUserIdentities(ctx, a.User)
	if err != nil || len(idents) != 1 || idents[0].ProviderUserID != "7" || idents[0].Email == nil || *idents[0].Email != a.Email {
		t.Fatalf("identities %+v, %v", idents, err)
	}
	// Another GitHub user with the same email cannot take the account: it is linked already.
	failed(t, o.signIn(t, ghUser{ID: 8, Login: "other", Email: a.Email, Verified: true}), "email_taken")

	// An account with a password can unlink GitHub; signing in again links it again.
	expect(t, o.Do(t, http.MethodDelete, "/v1/me/providers/github", cptest.Bearer(a.JWT), nil), http.StatusNoContent, "")
	expect(t, o.Do(t, http.MethodDelete, "/v1/me/providers/github", cptest.Bearer(a.JWT), nil), http.StatusNotFound, "not_found")

	// A signup never activated is replaced by a new account (its password proves nothing).
	if err := o.svc.Signup(ctx, "carol@example.test", "carol password", "Carol"); err != nil {
		t.Fatal(err)
	}
	o.mailer.next(t)
	carol := signedIn(t, o.signIn(t, ghUser{ID: 9, Login: "carol", Email: "carol@example.test", Verified: true}))
	u := o.user(t, parseUser(t, carol.UserID))
	if u.Status != "active" || u.PasswordHash != nil || u.Name != "carol" {
		t.Fatalf("carol %+v", u)
	}
	if n := o.count(t, `SELECT count(*) FROM users WHERE email = 'carol@example.test'`); n != 1 {
		t.Fatalf("%d carol rows", n)
	}
}

// connect starts link mode in b for the user of jwt and returns where the flow ends.
func (o *oauthFixture) connect(t *testing.T, b *http.Client, jwt string) *url.URL {
	t.Helper()
	req := get(t, o.Server.URL+"/v1/me/providers/github/connect")
	req.Header.Set("Authorization", "Bearer "+jwt)
	res, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		AuthURL string `json:"auth_url"`
	}
	err = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(body.AuthURL, o.gh.AuthURL()+"?") {
		t.Fatalf("connect: %d %+v %v", res.StatusCode, body, err)
	}
	return land(t, b, get(t, body.AuthURL))
}

func settings(t *testing.T, loc *url.URL, key, value string) {
	t.Helper()
	if loc.Path != "/dashboard/settings" || loc.Query().Get(key) != value || len(loc.Query()) != 1 {
		t.Fatalf("link landed at %s, want settings?%s=%s", loc, key, value)
	}
}

func TestOAuthLink(t *testing.T) {
	o := newOAuthFixture(t)
	a := o.NewAccount(t, "alice", false)
	o.setPassword(t, a.User, "alice password")
	gh := ghUser{ID: 42, Login: "alice-gh", Name: "Alice at GitHub", Email: "different@example.test", Verified: true}

	o.gh.As(gh)
	settings(t, o.connect(t, browser(t), a.JWT), "connected", "github")
	var me accounts.Me
	o.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil).JSON(t, &me)
	if !me.HasPassword || len(me.Providers) != 1 || me.Providers[0] != "github" {
		t.Fatalf("me after link %+v", me)
	}
	// Linking again is a no-op; signing in with the GitHub account is alice.
	settings(t, o.connect(t, browser(t), a.JWT), "connected", "github")
	if res := signedIn(t, o.signIn(t, gh)); res.UserID != a.UserID {
		t.Fatalf("signed in as %s, want %s", res.UserID, a.UserID)
	}

	// The GitHub account is alice's: bob cannot link it, nor link a second one over it.
	b := o.NewAccount(t, "bob", false)
	settings(t, o.connect(t, browser(t), b.JWT), "connect_error", "email_taken")
	o.gh.As(ghUser{ID: 43, Login: "alice-second", Email: "x@example.test", Verified: true})
	settings(t, o.connect(t, browser(t), a.JWT), "connect_error", "email_taken")

	// Unlink, then the sign-in method check: without a password GitHub is the last one.
	expect(t, o.Do(t, http.MethodDelete, "/v1/me/providers/github", cptest.Bearer(a.JWT), nil), http.StatusNoContent, "")
	o.Do(t, http.MethodGet, "/v1/me", cptest.Bearer(a.JWT), nil).JSON(t, &me)
	if len(me.Providers) != 0 {
		t.Fatalf("providers after unlink %v", me.Providers)
	}
	o.gh.As(ghUser{ID: 44, Login: "bob-gh", Email: "bob-gh@example.test", Verified: true})
	settings(t, o.connect(t, browser(t), b.JWT), "connected", "github")
	expect(t, o.Do(t, http.MethodDelete, "/v1/me/providers/github", cptest.Bearer(b.JWT), nil), http.StatusBadRequest, "last_login_method")

	// Link errors go to the settings page: denied at GitHub, and a session ended meanwhile.
	o.gh.Set(fakegithub.Behavior{Deny: true})
	settings(t, o.connect(t, browser(t), a.JWT), "connect_error", "access_denied")
	o.gh.As(gh)
	br := browser(t)
	req := get(t, o.Server.URL+"/v1/me/providers/github/connect")
	req.Header.Set("Authorization", "Bearer "+a.JWT)
	res, err := br.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		AuthURL string `json:"auth_url"`
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if _, err := o.Store.EndUserSessions(context.Background(), a.User); err != nil {
		t.Fatal(err)
	}
	settings(t, land(t, br, get(t, body.AuthURL)), "connect_error", "invalid_state")
	if n := o.count(t, `SELECT count(*) FROM user_identities WHERE user_id = $1`, a.User); n != 0 {
		t.Fatalf("%d identities for alice after failed links", n)
	}
}

func TestOAuthCallbackErrors(t *testing.T) {
	o := newOAuthFixture(t)
	o.gh.As(octocat)

	// No state cookie, a forged one, a state parameter that is not the cookie's.
	failed(t, land(t, browser(t), get(t, o.Server.URL+"/auth/oauth/github/callback?state=x&code=y")), "invalid_state")
	b := browser(t)
	srv, _ := url.Parse(o.Server.URL)
	b.Jar.SetCookies(srv, []*http.Cookie{{Name: "oauth_state", Value: "abc.99999999999:" + strings.Repeat("0", 64), Path: "/"}})
	failed(t, land(t, b, get(t, o.Server.URL+"/v1/auth/oauth/github/callback?state=abc.99999999999&code=y")), "invalid_state")
	// A real state cookie, but the state of another sign-in.
	b = browser(t)
	noFollow := *b
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := noFollow.Get(o.Server.URL + "/auth/oauth/github")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	failed(t, land(t, b, get(t, o.Server.URL+"/auth/oauth/github/callback?state=other&code=y")), "invalid_state")
	// The state cookie is used once: the callback clears it.
	loc, _ := res.Location()
	state := loc.Query().Get("state")
	failed(t, land(t, b, get(t, o.Server.URL+"/auth/oauth/github/callback?state="+url.QueryEscape(state)+"&code=y")), "invalid_state")

	o.gh.Set(fakegithub.Behavior{Deny: true})
	failed(t, o.start(t), "access_denied")
	o.gh.Set(fakegithub.Behavior{NoCode: true})
	failed(t, o.start(t), "missing_code")
	o.gh.Set(fakegithub.Behavior{FailToken: true})
	failed(t, o.start(t), "exchange_failed")
	if n := o.count(t, `SELECT count(*) FROM users`); n != 0 {
		t.Fatalf("%d users after failed sign-ins", n)
	}
	signedIn(t, o.signIn(t, octocat))
}

// TestOAuthConfig checks the configuration New refuses.
func TestOAuthConfig(t *testing.T) {
	if _, err := accounts.NewGitHub(accounts.GitHubConfig{ClientID: "id"}); err == nil {
		t.Fatal("NewGitHub without a secret succeeded")
	}
	if _, err := accounts.NewGitHub(accounts.GitHubConfig{ClientID: "id", ClientSecret: "s", TokenURL: "not a url"}); err == nil {
		t.Fatal("NewGitHub with a relative token URL succeeded")
	}
	p, err := accounts.NewGitHub(accounts.GitHubConfig{ClientID: "id", ClientSecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	env := cptest.New(t)
	base := accounts.Config{Store: env.Store, Signer: env.Signer, DashboardURL: dashboard, Capsules: &recordingDestroyer{env: env}}
	for name, mod := range map[string]func(*accounts.Config){
		"no key":         func(c *accounts.Config) { c.Providers = []accounts.Provider{p} },
		"short key":      func(c *accounts.Config) { c.Providers, c.OAuthKey = []accounts.Provider{p}, []byte("short") },
		"twice":          func(c *accounts.Config) { c.Providers, c.OAuthKey = []accounts.Provider{p, p}, make([]byte, 32) },
		"bad public URL": func(c *accounts.Config) { c.PublicURL = "/relative" },
	} {
		cfg := base
		mod(&cfg)
		if _, err := accounts.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
