package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
)

// fixture is an Authenticator over in-memory users and keys.
type fixture struct {
	auth   *Authenticator
	signer *Signer
	now    time.Time

	users map[string]UserState // by user id; Role is the role in team-a
	keys  map[string]APIKeyRecord
	used  []string // key hashes looked up

	usersErr, keysErr error
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{now: testNow}
	f.signer = newSigner(t, &f.now)
	f.users = map[string]UserState{
		"usr-member":   {Status: UserActive, Email: "m@x", Name: "Mem", Role: RoleMember},
		"usr-owner":    {Status: UserActive, Email: "o@x", Name: "Own", Role: RoleOwner},
		"usr-admin":    {Status: UserActive, Email: "p@x", Name: "Plat", IsAdmin: true, Role: RoleOwner},
		"usr-removed":  {Status: UserActive, Email: "r@x"}, // no longer in team-a
		"usr-disabled": {Status: UserDisabled, Role: RoleMember},
		"usr-deleted":  {Status: UserDeleted, Role: RoleMember},
		"usr-inactive": {Status: UserInactive, Role: RoleMember},
	}
	f.keys = map[string]APIKeyRecord{}
	users := UsersFunc(func(_ context.Context, userID, teamID string) (UserState, error) {
		if f.usersErr != nil {
			return UserState{}, f.usersErr
		}
		st, ok := f.users[userID]
		if !ok {
			return UserState{}, ErrNotFound
		}
		if teamID != "team-a" {
			st.Role = ""
		}
		return st, nil
	})
	keys := APIKeysFunc(func(_ context.Context, hash string) (APIKeyRecord, error) {
		f.used = append(f.used, hash)
		if f.keysErr != nil {
			return APIKeyRecord{}, f.keysErr
		}
		rec, ok := f.keys[hash]
		if !ok {
			return APIKeyRecord{}, ErrNotFound
		}
		return rec, nil
	})
	f.auth = NewAuthenticator(f.signer, users, keys)
	return f
}

// userToken issues a JWT for userID in team (role in the claim is "member" when team is set).
func (f *fixture) userToken(t *testing.T, userID, team string) string {
	t.Helper()
	c := UserClaims{UserID: userID, TeamID: team}
	if team != "" {
		c.Role = RoleMember
	}
	tok, _, err := f.signer.IssueUser(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fixture) apiKey(team string) string {
	k := GenerateAPIKey()
	f.keys[k.Hash] = APIKeyRecord{ID: "key-1", TeamID: team, Name: "ci"}
	return k.Secret
}

func bearer(tok string) string { return "Bearer " + tok }

func TestAuthenticate(t *testing.T) {
	f := newFixture(t)
	member := f.userToken(t, "usr-member", "team-a")
	owner := f.userToken(t, "usr-owner", "team-a")
	admin := f.userToken(t, "usr-admin", "team-a")
	adminNoTeam := f.userToken(t, "usr-admin", "")
	removed := f.userToken(t, "usr-removed", "team-a")
	noTeam := f.userToken(t, "usr-member", "")
	otherTeam := f.userToken(t, "usr-member", "team-b")
	disabled := f.userToken(t, "usr-disabled", "team-a")
	deleted := f.userToken(t, "usr-deleted", "team-a")
	inactive := f.userToken(t, "usr-inactive", "team-a")
	ghost := f.userToken(t, "usr-ghost", "team-a")
	hostTok, _, err := f.signer.IssueHost("host-1")
	if err != nil {
		t.Fatal(err)
	}
	key := f.apiKey("team-a")
	unknownKey := GenerateAPIKey().Secret

	const capsules = "/v1/capsules/cl-1/exec"
	tests := []struct {
		name   string
		kind   Kind
		path   string
		c      Credentials
		status int // 0 = success
		code   string
		check  func(t *testing.T, id Identity)
	}{
		// JWT
		{name: "jwt member", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(member)},
			check: func(t *testing.T, id Identity) {
				want := Identity{Method: MethodJWT, UserID: "usr-member", Email: "m@x", Name: "Mem", TeamID: "team-a", Role: RoleMember}
				if id != want {
					t.Fatalf("got %+v", id)
				}
			}},
		{name: "jwt role comes from the database", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(owner)},
			check: func(t *testing.T, id Identity) {
				if id.Role != RoleOwner {
					t.Fatalf("role %q", id.Role)
				}
			}},
		{name: "jwt scheme case-insensitive", kind: KindJWT, path: "/v1/me", c: Credentials{Authorization: "bearer " + member}},
		{name: "jwt removed member keeps no team", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(removed)},
			check: func(t *testing.T, id Identity) {
				if id.TeamID != "" || id.Role != "" {
					t.Fatalf("got %+v", id)
				}
			}},
		{name: "jwt without team", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(noTeam)}},
		{name: "jwt preferred over api key on jwt routes", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(member), APIKey: key},
			check: func(t *testing.T, id Identity) {
				if id.Method != MethodJWT {
					t.Fatalf("method %v", id.Method)
				}
			}},
		{name: "jwt missing", kind: KindJWT, path: "/v1/teams", status: 401, code: "unauthorized"},
		{name: "jwt route with api key only", kind: KindJWT, path: "/v1/teams", c: Credentials{APIKey: key}, status: 401, code: "unauthorized"},
		{name: "jwt basic scheme", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: "Basic dXNlcjpwdw=="}, status: 401, code: "unauthorized"},
		{name: "jwt bearer without token", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: "Bearer"}, status: 401, code: "unauthorized"},
		{name: "jwt garbage", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer("x.y.z")}, status: 401, code: "unauthorized"},
		{name: "jwt host token", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(hostTok)}, status: 401, code: "unauthorized"},
		{name: "jwt api key as bearer", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(key)}, status: 401, code: "unauthorized"},
		{name: "jwt unknown user", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(ghost)}, status: 401, code: "unauthorized"},
		{name: "jwt disabled user", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(disabled)}, status: 403, code: "account_deactivated"},
		{name: "jwt deleted user", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(deleted)}, status: 403, code: "account_deactivated"},
		{name: "jwt inactive user", kind: KindJWT, path: "/v1/teams", c: Credentials{Authorization: bearer(inactive)}, status: 403, code: "account_deactivated"},

		// KEY|JWT
		{name: "key", kind: KindKeyOrJWT, path: capsules, c: Credentials{APIKey: key},
			check: func(t *testing.T, id Identity) {
				want := Identity{Method: MethodAPIKey, TeamID: "team-a", APIKeyID: "key-1", APIKeyName: "ci"}
				if id != want {
					t.Fatalf("got %+v", id)
				}
			}},
		{name: "key checked first", kind: KindKeyOrJWT, path: "/v1/sandboxes", c: Credentials{APIKey: key, Authorization: bearer(member)},
			check: func(t *testing.T, id Identity) {
				if id.Method != MethodAPIKey {
					t.Fatalf("method %v", id.Method)
				}
			}},
		{name: "invalid key does not fall back to jwt", kind: KindKeyOrJWT, path: capsules, c: Credentials{APIKey: unknownKey, Authorization: bearer(member)}, status: 401, code: "unauthorized"},
		{name: "malformed key", kind: KindKeyOrJWT, path: capsules, c: Credentials{APIKey: "wrn_nothex"}, status: 401, code: "unauthorized"},
		{name: "key on snapshots", kind: KindKeyOrJWT, path: "/v1/snapshots/foo", c: Credentials{APIKey: key}},
		{name: "key outside its routes", kind: KindKeyOrJWT, path: "/v1/api-keys", c: Credentials{APIKey: key}, status: 401, code: "unauthorized"},
		{name: "jwt on team route", kind: KindKeyOrJWT, path: capsules, c: Credentials{Authorization: bearer(member)},
			check: func(t *testing.T, id Identity) {
				if id.TeamID != "team-a" || id.Method != MethodJWT {
					t.Fatalf("got %+v", id)
				}
			}},
		{name: "jwt without team on team route", kind: KindKeyOrJWT, path: capsules, c: Credentials{Authorization: bearer(noTeam)}, status: 403, code: "no_team"},
		{name: "jwt of a removed member on team route", kind: KindKeyOrJWT, path: capsules, c: Credentials{Authorization: bearer(removed)}, status: 403, code: "no_team"},
		{name: "jwt of another team membership gone", kind: KindKeyOrJWT, path: capsules, c: Credentials{Authorization: bearer(otherTeam)}, status: 403, code: "no_team"},
		{name: "jwt disabled on team route", kind: KindKeyOrJWT, path: capsules, c: Credentials{Authorization: bearer(disabled)}, status: 403, code: "account_deactivated"},
		{name: "nothing on team route", kind: KindKeyOrJWT, path: capsules, status: 401, code: "unauthorized"},
		{name: "host token on team route", kind: KindKeyOrJWT, path: capsules, c: Credentials{HostToken: hostTok}, status: 401, code: "unauthorized"},

		// ADMIN
		{name: "admin", kind: KindAdmin, path: "/v1/admin/users", c: Credentials{Authorization: bearer(admin)},
			check: func(t *testing.T, id Identity) {
				if !id.IsAdmin || id.UserID != "usr-admin" {
					t.Fatalf("got %+v", id)
				}
			}},
		{name: "admin without team", kind: KindAdmin, path: "/v1/admin/users", c: Credentials{Authorization: bearer(adminNoTeam)}},
		{name: "admin route for a member", kind: KindAdmin, path: "/v1/admin/users", c: Credentials{Authorization: bearer(member)}, status: 403, code: "forbidden"},
		{name: "admin route with api key", kind: KindAdmin, path: "/v1/admin/capsules", c: Credentials{APIKey: key}, status: 401, code: "unauthorized"},
		{name: "admin route without credentials", kind: KindAdmin, path: "/v1/admin/users", status: 401, code: "unauthorized"},

		// HOST
		{name: "host", kind: KindHost, path: "/v1/hosts/host-1/heartbeat", c: Credentials{HostToken: hostTok},
			check: func(t *testing.T, id Identity) {
				if id != (Identity{Method: MethodHost, HostID: "host-1"}) {
					t.Fatalf("got %+v", id)
				}
			}},
		{name: "host missing", kind: KindHost, path: "/v1/hosts/host-1/heartbeat", c: Credentials{Authorization: bearer(member)}, status: 401, code: "unauthorized"},
		{name: "host with user token", kind: KindHost, path: "/v1/hosts/host-1/heartbeat", c: Credentials{HostToken: member}, status: 401, code: "unauthorized"},

		{name: "unknown kind", kind: Kind(0), path: "/", c: Credentials{Authorization: bearer(member)}, status: 500, code: "internal_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := f.auth.Authenticate(context.Background(), tt.kind, tt.path, tt.c)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tt.check != nil {
					tt.check(t, id)
				}
				return
			}
			requireCode(t, err, tt.status, tt.code)
			if id != (Identity{}) {
				t.Fatalf("identity %+v returned with an error", id)
			}
		})
	}
}

func TestAuthenticateLookupFailures(t *testing.T) {
	f := newFixture(t)
	member := f.userToken(t, "usr-member", "team-a")
	key := f.apiKey("team-a")
	f.usersErr = errors.New("connection refused")
	f.keysErr = errors.New("connection refused")
	tests := []struct {
		name string
		kind Kind
		c    Credentials
	}{
		{"users", KindJWT, Credentials{Authorization: bearer(member)}},
		{"keys", KindKeyOrJWT, Credentials{APIKey: key}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.auth.Authenticate(context.Background(), tt.kind, "/v1/capsules", tt.c)
			e := requireCode(t, err, 500, apierr.CodeInternalError)
			if !errors.Is(e, f.usersErr) && !errors.Is(e, f.keysErr) {
				t.Fatalf("cause lost: %v", e)
			}
		})
	}
}

func TestAPIKeyLookupByHash(t *testing.T) {
	f := newFixture(t)
	key := f.apiKey("team-a")
	if _, err := f.auth.Authenticate(context.Background(), KindKeyOrJWT, "/v1/capsules", Credentials{APIKey: key}); err != nil {
		t.Fatal(err)
	}
	if len(f.used) != 1 || f.used[0] != HashSecret(key) {
		t.Fatalf("lookups %v", f.used)
	}
	// Malformed keys never reach the database.
	f.used = nil
	_, _ = f.auth.Authenticate(context.Background(), KindKeyOrJWT, "/v1/capsules", Credentials{APIKey: "wrn_short"})
	if len(f.used) != 0 {
		t.Fatal("malformed key was looked up")
	}
}

func TestAPIKeyAllowed(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/v1/capsules", true}, {"/v1/capsules/", true}, {"/v1/capsules/cl-1/pty", true}, {"/v1/capsules/stats", true},
		{"/v1/sandboxes", true}, {"/v1/sandboxes/cl-1/files/list", true},
		{"/v1/snapshots", true}, {"/v1/snapshots/name", true},
		{"/v1/capsulesx", false}, {"/v1/api-keys", false}, {"/v1/teams", false}, {"/v1/admin/capsules", false},
		{"/v1/hosts", false}, {"/capsules", false}, {"", false},
		{"/sandboxes", true}, {"/v2/sandboxes/x/connect", true}, {"/snapshots", true}, {"/templates/t", true},
		{"/sandboxesx", false}, {"/v2/teams", false},
	}
	for _, tt := range tests {
		if got := APIKeyAllowed(tt.path); got != tt.want {
			t.Errorf("APIKeyAllowed(%q) = %v", tt.path, got)
		}
	}
}

func TestCredentialsFrom(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-API-Key", " wrn_a ")
	r.Header.Set("Authorization", "Bearer t ")
	r.Header.Set("X-Host-Token", "h")
	got := CredentialsFrom(r)
	if got != (Credentials{APIKey: "wrn_a", Authorization: "Bearer t", HostToken: "h"}) || got.Empty() {
		t.Fatalf("got %+v", got)
	}
	if !CredentialsFrom(httptest.NewRequest(http.MethodGet, "/", nil)).Empty() {
		t.Fatal("no headers is not Empty")
	}
}

func TestMiddleware(t *testing.T) {
	f := newFixture(t)
	member := f.userToken(t, "usr-member", "team-a")
	var got Identity
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := FromContext(r.Context())
		if !ok {
			t.Error("no identity in context")
		}
		got = id
		w.WriteHeader(http.StatusNoContent)
	})
	h := f.auth.Middleware(KindKeyOrJWT)(next)

	tests := []struct {
		name   string
		header map[string]string
		status int
		code   string
	}{
		{"ok", map[string]string{"Authorization": bearer(member)}, 204, ""},
		{"missing", nil, 401, "unauthorized"},
		{"bad key", map[string]string{"X-API-Key": "wrn_0"}, 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = Identity{}
			r := httptest.NewRequest(http.MethodGet, "/v1/capsules", nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tt.status {
				t.Fatalf("status %d, body %s", rec.Code, rec.Body)
			}
			if tt.code == "" {
				if got.UserID != "usr-member" {
					t.Fatalf("identity %+v", got)
				}
				return
			}
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != tt.code || body.Error.Message == "" {
				t.Fatalf("body %s (%v)", rec.Body, err)
			}
			if got != (Identity{}) {
				t.Fatal("handler ran")
			}
		})
	}
}
