package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "0123456789abcdef0123456789abcdef" // 32 chars

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newSigner returns a Signer whose clock reads *now.
func newSigner(t *testing.T, now *time.Time) *Signer {
	t.Helper()
	s, err := NewSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return *now }
	return s
}

// signRaw signs arbitrary claims, for tokens the Signer would never issue.
func signRaw(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func userMapClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "usr-1", "team_id": "team-1", "role": "member", "email": "a@x", "name": "A", "is_admin": false,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func hostMapClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{"typ": "host", "host_id": "host-1", "sub": "host-1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestNewSigner(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		ok     bool
	}{
		{"32 chars", testSecret, true},
		{"long", strings.Repeat("s", 100), true},
		{"31 chars", testSecret[:31], false},
		{"empty", "", false},
		{"32 bytes but 16 chars", strings.Repeat("é", 16), false},
		{"32 multibyte chars", strings.Repeat("é", 32), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSigner(tt.secret)
			if (err == nil) != tt.ok {
				t.Fatalf("NewSigner: %v", err)
			}
		})
	}
}

func TestUserTokenRoundTrip(t *testing.T) {
	now := testNow
	s := newSigner(t, &now)
	in := UserClaims{UserID: "usr-abc", TeamID: "team-def", Role: RoleAdmin, Email: "a@example.com", Name: "Ada", IsAdmin: true,
		IssuedAt: time.Unix(1, 0), ExpiresAt: time.Unix(2, 0)}
	tok, issued, err := s.IssueUser(in)
	if err != nil {
		t.Fatal(err)
	}
	if !issued.IssuedAt.Equal(now) || !issued.ExpiresAt.Equal(now.Add(6*time.Hour)) {
		t.Fatalf("issued times %v %v", issued.IssuedAt, issued.ExpiresAt)
	}
	got, err := s.ParseUser(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != in.UserID || got.TeamID != in.TeamID || got.Role != in.Role || got.Email != in.Email ||
		got.Name != in.Name || got.IsAdmin != in.IsAdmin || !got.IssuedAt.Equal(issued.IssuedAt) || !got.ExpiresAt.Equal(issued.ExpiresAt) {
		t.Fatalf("parsed %+v, issued %+v", got, issued)
	}

	// The payload holds exactly the claims of docs/api.md.
	payload := decodePayload(t, tok)
	keys := make([]string, 0, len(payload))
	for k := range payload {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"email", "exp", "iat", "is_admin", "name", "role", "sub", "team_id"}
	if !slices.Equal(keys, want) {
		t.Fatalf("claims %v, want %v", keys, want)
	}
	if h := decodeHeader(t, tok); h["alg"] != "HS256" {
		t.Fatalf("header %v", h)
	}

	// Valid until exp, not after.
	now = issued.ExpiresAt.Add(-time.Second)
	if _, err := s.ParseUser(tok); err != nil {
		t.Fatalf("token rejected before expiry: %v", err)
	}
	now = issued.ExpiresAt.Add(time.Second)
	if _, err := s.ParseUser(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestUserTokenWithoutTeam(t *testing.T) {
	now := testNow
	s := newSigner(t, &now)
	tok, _, err := s.IssueUser(UserClaims{UserID: "usr-1", Email: "a@x"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ParseUser(tok)
	if err != nil || got.TeamID != "" || got.Role != "" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestIssueUserRejects(t *testing.T) {
	now := testNow
	s := newSigner(t, &now)
	tests := []struct {
		name string
		c    UserClaims
	}{
		{"no user", UserClaims{TeamID: "team-1", Role: RoleOwner}},
		{"wrong user prefix", UserClaims{UserID: "host-1", TeamID: "team-1", Role: RoleOwner}},
		{"wrong team prefix", UserClaims{UserID: "usr-1", TeamID: "usr-1", Role: RoleOwner}},
		{"team without role", UserClaims{UserID: "usr-1", TeamID: "team-1"}},
		{"invalid role", UserClaims{UserID: "usr-1", TeamID: "team-1", Role: "root"}},
		{"role without team", UserClaims{UserID: "usr-1", Role: RoleOwner}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.IssueUser(tt.c); err == nil {
				t.Fatal("IssueUser accepted bad claims")
			}
		})
	}
}

func TestParseUserRejects(t *testing.T) {
	now := testNow
	s := newSigner(t, &now)
	secret := []byte(testSecret)
	hostTok, _, err := s.IssueHost("host-1")
	if err != nil {
		t.Fatal(err)
	}
	valid := signRaw(t, jwt.SigningMethodHS256, secret, userMapClaims(now))
	if _, err := s.ParseUser(valid); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	tests := []struct {
		name string
		tok  string
	}{
		{"host token", hostTok},
		{"typ host claim on user claims", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "typ", "host"))},
		{"other typ", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "typ", "refresh"))},
		{"wrong secret", signRaw(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), userMapClaims(now))},
		{"HS384", signRaw(t, jwt.SigningMethodHS384, secret, userMapClaims(now))},
		{"HS512", signRaw(t, jwt.SigningMethodHS512, secret, userMapClaims(now))},
		{"alg none", signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, userMapClaims(now))},
		{"expired", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "exp", now.Add(-time.Second).Unix()))},
		{"no exp", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "exp", nil))},
		{"no iat", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "iat", nil))},
		{"not yet valid", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "nbf", now.Add(time.Hour).Unix()))},
		{"no sub", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "sub", nil))},
		{"host sub", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "sub", "host-1"))},
		{"bad team", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "team_id", "usr-1"))},
		{"bad role", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "role", "root"))},
		{"role without team", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "team_id", nil))},
		{"wrong claim type", signRaw(t, jwt.SigningMethodHS256, secret, with(userMapClaims(now), "is_admin", "yes"))},
		{"garbage", "not.a.jwt"},
		{"empty", ""},
		{"tampered payload", tamper(t, valid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := s.ParseUser(tt.tok); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("ParseUser = %+v, %v; want ErrInvalidToken", c, err)
			}
		})
	}
}

func TestHostTokenRoundTrip(t *testing.T) {
	now := testNow
	s := newSigner(t, &now)
	tok, issued, err := s.IssueHost("host-xyz")
	if err != nil {
		t.Fatal(err)
	}
	if !issued.ExpiresAt.Equal(now.Add(7 * 24 * time.Hour)) {
		t.Fatalf("expires %v", issued.ExpiresAt)
	}
	got, err := s.ParseHost(tok)
	if err != nil || got != issued {
		t.Fatalf("ParseHost = %+v, %v; want %+v", got, err, issued)
	}
	p := decodePayload(t, tok)
	if p["typ"] != "host" || p["host_id"] != "host-xyz" || p["sub"] != "host-xyz" || len(p) != 5 {
		t.Fatalf("payload %v", p)
	}
	now = issued.ExpiresAt.Add(time.Second)
	if _, err := s.ParseHost(tok); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("expired host token: %v", err)
	}
	if _, _, err := s.IssueHost("usr-1"); err == nil {
		t.Fatal("IssueHost accepted a user id")
	}
}

func TestParseHostRejects(t *testing.T) {
	now := testNow
	s := newSigner(t, &now)
	secret := []byte(testSecret)
	userTok, _, err := s.IssueUser(UserClaims{UserID: "usr-1", TeamID: "team-1", Role: RoleOwner})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ParseHost(signRaw(t, jwt.SigningMethodHS256, secret, hostMapClaims(now))); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	tests := []struct {
		name string
		tok  string
	}{
		{"user token", userTok},
		{"no typ", signRaw(t, jwt.SigningMethodHS256, secret, with(hostMapClaims(now), "typ", nil))},
		{"other typ", signRaw(t, jwt.SigningMethodHS256, secret, with(hostMapClaims(now), "typ", "user"))},
		{"bad host id", signRaw(t, jwt.SigningMethodHS256, secret, with(hostMapClaims(now), "host_id", "usr-1", "sub", "usr-1"))},
		{"sub differs", signRaw(t, jwt.SigningMethodHS256, secret, with(hostMapClaims(now), "sub", "host-2"))},
		{"expired", signRaw(t, jwt.SigningMethodHS256, secret, with(hostMapClaims(now), "exp", now.Add(-time.Minute).Unix()))},
		{"no exp", signRaw(t, jwt.SigningMethodHS256, secret, with(hostMapClaims(now), "exp", nil))},
		{"no iat", signRaw(t, jwt.SigningMethodHS256, secret, with(hostMapClaims(now), "iat", nil))},
		{"wrong secret", signRaw(t, jwt.SigningMethodHS256, []byte(strings.Repeat("y", 40)), hostMapClaims(now))},
		{"HS512", signRaw(t, jwt.SigningMethodHS512, secret, hostMapClaims(now))},
		{"garbage", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := s.ParseHost(tt.tok); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("ParseHost = %+v, %v; want ErrInvalidToken", c, err)
			}
		})
	}
}

func decodeSegment(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func decodeHeader(t *testing.T, tok string) map[string]any  { return decodeSegment(t, tok, 0) }
func decodePayload(t *testing.T, tok string) map[string]any { return decodeSegment(t, tok, 1) }

// tamper re-encodes the payload of tok with is_admin set, keeping the old signature.
func tamper(t *testing.T, tok string) string {
	t.Helper()
	p := decodePayload(t, tok)
	p["is_admin"] = true
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}
