package cp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/fakegithub"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// TestGitHubSignIn walks GitHub sign-in and account linking through the wrenn-cp binary, configured by
// its flags to use a fake GitHub on loopback, with a cookie-keeping browser: a first sign-in creates the
// account, a second one signs in to it, a password account links GitHub from its settings and unlinks
// it, and the callback's failures reach the dashboard as reasons.
func TestGitHubSignIn(t *testing.T) {
	gh := fakegithub.New(t)
	const dash = "http://dashboard.invalid"
	// The public URL must be known before the control plane starts: a second control plane serves it.
	port := testutil.FreePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := platform.New(t, 1, "--dashboard-url", dash, "--public-url", public,
		"--github-client-id", fakegithub.ClientID, "--github-client-secret", fakegithub.ClientSecret,
		"--github-auth-url", gh.AuthURL(), "--github-token-url", gh.TokenURL(), "--github-api-url", gh.APIURL())
	cp := p.StartCP(port)

	var providers struct{ Providers []string }
	cptest.Call(t, cp.URL, "GET", "/v1/auth/providers", cptest.Cred{}, nil).JSON(t, &providers)
	if !slices.Equal(providers.Providers, []string{"github"}) {
		t.Fatalf("providers %v", providers.Providers)
	}

	stop := dash + "/"
	signIn := func(start string) url.Values {
		t.Helper()
		req, err := http.NewRequest("GET", public+start, nil)
		if err != nil {
			t.Fatal(err)
		}
		loc := fakegithub.Land(t, fakegithub.Browser(t, stop), req, stop)
		if loc.Path != "/auth/github/callback" {
			t.Fatalf("sign-in landed at %s", loc)
		}
		return loc.Query()
	}
	octo := fakegithub.User{ID: 1001, Login: "octo", Name: "Octo Cat", Email: "octo@example.test", Verified: true}
	gh.As(octo)
	first := signIn("/auth/oauth/github")
	if first.Get("token") == "" || first.Get("email") != "octo@example.test" || first.Get("name") != "Octo Cat" || first.Get("team_id") == "" {
		t.Fatalf("first sign-in %v", first)
	}
	jwt := cptest.Bearer(first.Get("token"))
	var me struct {
		HasPassword bool     `json:"has_password"`
		Providers   []string `json:"providers"`
	}
	cptest.Call(t, p.URL(), "GET", "/v1/me", jwt, nil).JSON(t, &me)
	if me.HasPassword || !slices.Equal(me.Providers, []string{"github"}) {
		t.Fatalf("me %+v", me)
	}
	if res := cptest.Call(t, cp.URL, "GET", "/v1/admin/users", jwt, nil); res.Status != http.StatusForbidden {
		t.Fatalf("a GitHub sign-in made an admin: %d %s", res.Status, res.Body)
	}
	second := signIn("/v1/auth/oauth/github")
	if second.Get("user_id") != first.Get("user_id") || second.Get("team_id") != first.Get("team_id") {
		t.Fatalf("second sign-in %v, first %v", second, first)
	}
	if res := cptest.Call(t, cp.URL, "DELETE", "/v1/me/providers/github", jwt, nil); res.Status != http.StatusBadRequest || res.ErrorCode() != "last_login_method" {
		t.Fatalf("unlink the only sign-in method: %d %s", res.Status, res.Body)
	}

	// Link mode from the admin's password account.
	adminGH := fakegithub.User{ID: 1002, Login: "admin-gh", Email: "someone-else@example.test", Verified: true}
	gh.As(adminGH)
	b := fakegithub.Browser(t, stop)
	req, _ := http.NewRequest("GET", public+"/v1/me/providers/github/connect", nil)
	req.Header.Set("Authorization", "Bearer "+p.Admin)
	res, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var connect struct {
		AuthURL string `json:"auth_url"`
	}
	err = json.NewDecoder(res.Body).Decode(&connect)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(connect.AuthURL, gh.AuthURL()+"?") {
		t.Fatalf("connect: %d %+v %v", res.StatusCode, connect, err)
	}
	req, _ = http.NewRequest("GET", connect.AuthURL, nil)
	if loc := fakegithub.Land(t, b, req, stop); loc.String() != dash+"/dashboard/settings?connected=github" {
		t.Fatalf("link landed at %s", loc)
	}
	cptest.Call(t, p.URL(), "GET", "/v1/me", cptest.Bearer(p.Admin), nil).JSON(t, &me)
	if !me.HasPassword || !slices.Equal(me.Providers, []string{"github"}) {
		t.Fatalf("admin after link %+v", me)
	}
	var admin struct {
		UserID string `json:"user_id"`
	}
	cptest.Call(t, p.URL(), "POST", "/v1/auth/login", cptest.Cred{}, map[string]string{"email": "admin@example.test", "password": "admin-password"}).JSON(t, &admin)
	if got := signIn("/auth/oauth/github"); got.Get("user_id") != admin.UserID {
		t.Fatalf("GitHub sign-in after linking: %v, want admin %s", got, admin.UserID)
	}
	if res := cptest.Call(t, cp.URL, "DELETE", "/v1/me/providers/github", cptest.Bearer(p.Admin), nil); res.Status != http.StatusNoContent {
		t.Fatalf("unlink: %d %s", res.Status, res.Body)
	}
	cptest.Call(t, p.URL(), "GET", "/v1/me", cptest.Bearer(p.Admin), nil).JSON(t, &me)
	if len(me.Providers) != 0 {
		t.Fatalf("providers after unlink %v", me.Providers)
	}

	// Failures reach the dashboard as reasons.
	req, _ = http.NewRequest("GET", public+"/auth/oauth/github/callback?state=forged&code=x", nil)
	if loc := fakegithub.Land(t, fakegithub.Browser(t, stop), req, stop); loc.Query().Get("error") != "invalid_state" {
		t.Fatalf("callback without state cookie landed at %s", loc)
	}
	gh.Set(fakegithub.Behavior{Deny: true})
	if got := signIn("/auth/oauth/github"); got.Get("error") != "access_denied" || got.Get("token") != "" {
		t.Fatalf("denied sign-in %v", got)
	}
	gh.Set(fakegithub.Behavior{FailToken: true})
	if got := signIn("/auth/oauth/github"); got.Get("error") != "exchange_failed" || got.Get("token") != "" {
		t.Fatalf("failed exchange %v", got)
	}
}
