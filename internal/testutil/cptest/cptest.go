// Package cptest is the control-plane test environment: a migrated PostgreSQL database, the JWT
// signer, the authenticator and a router served by an httptest server, plus accounts (user, team, JWT,
// API key) created directly in the database. Use it from external test packages (package x_test).
package cptest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
)

// Secret is the JWT secret of test environments.
const Secret = "cptest-secret-0123456789abcdefghijklmnop"

// Env is one test's control-plane environment.
type Env struct {
	Store  *store.Store
	Signer *auth.Signer
	Authn  *auth.Authenticator
	Router *httpapi.Router
	// Server serves Router; its URL is the API base.
	Server *httptest.Server
}

// New opens a fresh database and an empty router; register handlers on Router, then call the API at
// Server.URL. Everything is closed when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	dsn := testutil.Postgres(t)
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	signer, err := auth.NewSigner(Secret)
	if err != nil {
		t.Fatal(err)
	}
	l := accounts.Lookups{Store: st}
	authn := auth.NewAuthenticator(signer, l, l)
	e := &Env{Store: st, Signer: signer, Authn: authn, Router: httpapi.NewRouter(authn)}
	e.Server = httptest.NewServer(e.Router)
	t.Cleanup(e.Server.Close)
	return e
}

// Account is an active user with a team of its own.
type Account struct {
	User   uuid.UUID
	Team   uuid.UUID
	UserID string // usr-…
	TeamID string // team-…
	Email  string
	Role   auth.Role
	JWT    string // user JWT scoped to Team
	APIKey string // wrn_… key of Team
}

// NewAccount creates an active user (platform admin when admin) who owns a new team, with a JWT and an
// API key for that team.
func (e *Env) NewAccount(t testing.TB, name string, admin bool) Account {
	t.Helper()
	ctx := context.Background()
	email := strings.ToLower(name) + "-" + testutil.RandomName("", 6) + "@example.test"
	u, err := e.Store.CreateUser(ctx, db.CreateUserParams{Email: email, Name: name, Status: store.UserActive, IsAdmin: admin})
	if err != nil {
		t.Fatalf("create user: %v", err)
	}
	team, err := e.Store.CreateTeam(ctx, name+"'s Team")
	if err != nil {
		t.Fatalf("create team: %v", err)
	}
	a := Account{User: u.ID, Team: team.ID, UserID: ids.User.Format(u.ID), TeamID: ids.Team.Format(team.ID), Email: email}
	e.AddMember(t, a.Team, a.User, auth.RoleOwner)
	a.Role = auth.RoleOwner
	a.JWT = e.JWT(t, a.User, a.Team, auth.RoleOwner)
	key := auth.GenerateAPIKey()
	if _, err := e.Store.CreateAPIKey(ctx, db.CreateAPIKeyParams{TeamID: team.ID, Name: "test key", KeyHash: key.Hash, KeyPrefix: key.Prefix, CreatedBy: &u.ID}); err != nil {
		t.Fatalf("create api key: %v", err)
	}
	a.APIKey = key.Secret
	return a
}

// AddMember adds user to team with role.
func (e *Env) AddMember(t testing.TB, team, user uuid.UUID, role auth.Role) {
	t.Helper()
	if _, err := e.Store.AddTeamMember(context.Background(), db.AddTeamMemberParams{TeamID: team, UserID: user, Role: string(role)}); err != nil {
		t.Fatalf("add member: %v", err)
	}
}

// JWT issues a user JWT for user in team with role (team uuid.Nil = no team).
func (e *Env) JWT(t testing.TB, user, team uuid.UUID, role auth.Role) string {
	t.Helper()
	u, err := e.Store.GetUserByID(context.Background(), user)
	if err != nil {
		t.Fatalf("read user: %v", err)
	}
	c := auth.UserClaims{UserID: ids.User.Format(user), Email: u.Email, Name: u.Name, IsAdmin: u.IsAdmin}
	if team != uuid.Nil {
		c.TeamID, c.Role = ids.Team.Format(team), role
	}
	tok, _, err := e.Signer.IssueUser(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Cred is how a request authenticates: Bearer JWT, X-API-Key, or X-Host-Token.
type Cred struct{ JWT, APIKey, HostToken string }

// Bearer authenticates with a user JWT.
func Bearer(jwt string) Cred { return Cred{JWT: jwt} }

// Key authenticates with an API key.
func Key(k string) Cred { return Cred{APIKey: k} }

// Response is a finished API call.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v, failing the test on malformed JSON.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// ErrorCode returns error.code of an error body ("" when there is none).
func (r Response) ErrorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Do calls the API: body is JSON-encoded unless it is an io.Reader or []byte (sent as is; a reader
// with a ContentType() string method sets the Content-Type, e.g. multipart bodies).
func (e *Env) Do(t testing.TB, method, path string, cred Cred, body any) Response {
	t.Helper()
	return Call(t, e.Server.URL, method, path, cred, body)
}

// Call calls the API at base (any control plane, not only an Env's).
func Call(t testing.TB, base, method, path string, cred Cred, body any) Response {
	t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case interface {
		io.Reader
		ContentType() string
	}:
		rd, ctype = b, b.ContentType()
	case io.Reader:
		rd = b
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(buf), "application/json"
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	switch {
	case cred.APIKey != "":
		req.Header.Set("X-API-Key", cred.APIKey)
	case cred.JWT != "":
		req.Header.Set("Authorization", "Bearer "+cred.JWT)
	case cred.HostToken != "":
		req.Header.Set("X-Host-Token", cred.HostToken)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return Response{Status: res.StatusCode, Header: res.Header, Body: b}
}
