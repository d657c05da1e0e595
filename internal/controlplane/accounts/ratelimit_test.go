package accounts_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ratelimit"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// limited checks a 429 rate_limited answer with a Retry-After of at least a second.
func limited(t *testing.T, what string, res cptest.Response) {
	t.Helper()
	if res.Status != 429 || res.ErrorCode() != "rate_limited" {
		t.Fatalf("%s: %d %s, want 429 rate_limited", what, res.Status, res.Body)
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("%s: Retry-After %q", what, res.Header.Get("Retry-After"))
	}
}

func TestRateLimits(t *testing.T) {
	hour := time.Hour
	f := newFixtureWith(t, func(c *accounts.Config) {
		c.RateLimits = accounts.RateLimits{
			LoginFailuresPerIP:      ratelimit.Limit{Burst: 3, Every: hour},
			LoginFailuresPerAccount: ratelimit.Limit{Burst: 2, Every: hour},
			SignupsPerIP:            ratelimit.Limit{Burst: 2, Every: hour},
			TokenFailuresPerIP:      ratelimit.Limit{Burst: 2, Every: hour},
			ResetsPerIP:             ratelimit.Limit{Burst: 3, Every: hour},
			ResetsPerAccount:        ratelimit.Limit{Burst: 1, Every: hour},
		}
	})
	alice := f.NewAccount(t, "alice", false)
	f.setPassword(t, alice.User, "alice-password")

	t.Run("Login", func(t *testing.T) {
		login := func(email, pw string) cptest.Response {
			return f.Do(t, "POST", "/v1/auth/login", cptest.Cred{}, map[string]string{"email": email, "password": pw})
		}
		// Successful logins count nothing.
		for range 5 {
			expect(t, login(alice.Email, "alice-password"), 200, "")
		}
		expect(t, login(alice.Email, "wrong"), 401, "unauthorized")
		expect(t, login(alice.Email, "wrong"), 401, "unauthorized")
		// The account is out of failures: even the right password waits.
		limited(t, "third failure on the account", login(alice.Email, "wrong"))
		limited(t, "right password of a limited account", login(alice.Email, "alice-password"))
		// Another account from the same IP: one failure left for the IP.
		expect(t, login("nobody@example.test", "wrong"), 401, "unauthorized")
		limited(t, "IP out of failures", login("someone@example.test", "wrong"))
	})

	t.Run("Signup", func(t *testing.T) {
		for i := range 2 {
			res := f.Do(t, "POST", "/v1/auth/signup", cptest.Cred{}, map[string]string{
				"email": "new" + strconv.Itoa(i) + "@example.test", "password": "password-123", "name": "New"})
			expect(t, res, 201, "")
			f.mailer.next(t)
		}
		limited(t, "third signup", f.Do(t, "POST", "/v1/auth/signup", cptest.Cred{}, map[string]string{
			"email": "new3@example.test", "password": "password-123", "name": "New"}))
		if n := f.count(t, "SELECT count(*) FROM users WHERE email = 'new3@example.test'"); n != 0 {
			t.Fatalf("limited signup created %d users", n)
		}
	})

	t.Run("Tokens", func(t *testing.T) {
		bad := "wrn_act_" + "0000000000000000000000000000000000000000000"
		expect(t, f.Do(t, "POST", "/v1/auth/activate", cptest.Cred{}, map[string]string{"token": bad}), 400, "invalid_token")
		expect(t, f.Do(t, "POST", "/v1/me/password/reset/confirm", cptest.Cred{}, map[string]string{"token": bad, "new_password": "x-password-1"}), 400, "invalid_token")
		limited(t, "third bad token", f.Do(t, "POST", "/v1/auth/activate", cptest.Cred{}, map[string]string{"token": bad}))
		limited(t, "bad token after the limit", f.Do(t, "POST", "/v1/me/password/reset/confirm", cptest.Cred{}, map[string]string{"token": bad, "new_password": "x-password-1"}))
	})

	t.Run("PasswordReset", func(t *testing.T) {
		reset := func(email string) cptest.Response {
			return f.Do(t, "POST", "/v1/me/password/reset", cptest.Cred{}, map[string]string{"email": email})
		}
		expect(t, reset(alice.Email), 204, "")
		if msg := f.mailer.next(t); msg.To != alice.Email {
			t.Fatalf("reset mail to %s", msg.To)
		}
		limited(t, "second reset of the account", reset(alice.Email))
		f.mailer.none(t)
		expect(t, reset("other@example.test"), 204, "")
		limited(t, "IP out of resets", reset("third@example.test"))
	})

	t.Run("APIKeyFailures", func(t *testing.T) {
		f.Authn.LimitKeyFailures(ratelimit.New(ratelimit.Limit{Burst: 2, Every: hour}, 0))
		t.Cleanup(func() { f.Authn.LimitKeyFailures(ratelimit.New(auth.DefaultKeyFailureLimit, 0)) })
		probe := func(key string) cptest.Response { return f.Do(t, "GET", "/v1/capsules/probe", cptest.Key(key), nil) }
		expect(t, probe(alice.APIKey), 200, "")
		for range 2 {
			expect(t, probe(auth.APIKeyPrefix+"not-a-real-key-0000000000000000000000000"), 401, "unauthorized")
		}
		limited(t, "bad key past the limit", probe(auth.APIKeyPrefix+"not-a-real-key-0000000000000000000000000"))
		limited(t, "good key from a limited IP", probe(alice.APIKey))
	})
}
