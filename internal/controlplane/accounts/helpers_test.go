package accounts_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/accounts"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/mail"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const dashboard = "https://dash.example.test"

// recordingMailer is a mail.Mailer test double: it records messages and can be told to fail.
type recordingMailer struct {
	mu   sync.Mutex
	fail error
	sent chan mail.Message
}

func newRecordingMailer() *recordingMailer {
	return &recordingMailer{sent: make(chan mail.Message, 100)}
}

func (m *recordingMailer) Send(_ context.Context, msg mail.Message) error {
	m.mu.Lock()
	fail := m.fail
	m.mu.Unlock()
	if fail != nil {
		return fail
	}
	m.sent <- msg
	return nil
}

func (m *recordingMailer) setFail(err error) {
	m.mu.Lock()
	m.fail = err
	m.mu.Unlock()
}

// next waits for the next message sent.
func (m *recordingMailer) next(t *testing.T) mail.Message {
	t.Helper()
	select {
	case msg := <-m.sent:
		return msg
	case <-time.After(30 * time.Second):
		t.Fatal("no mail sent within 30 s")
		return mail.Message{}
	}
}

// none checks that no message is waiting (after a short grace for background sends).
func (m *recordingMailer) none(t *testing.T) {
	t.Helper()
	select {
	case msg := <-m.sent:
		t.Fatalf("unexpected mail to %s: %s", msg.To, msg.Subject)
	case <-time.After(200 * time.Millisecond): // a slow machine can only make this pass
	}
}

// tokenOf returns the token of the single link in msg, which must start with dashboard+path.
func tokenOf(t *testing.T, msg mail.Message, path string) string {
	t.Helper()
	links := mail.Links(msg.Text)
	if len(links) != 1 || !strings.HasPrefix(links[0], dashboard+path+"?token=") {
		t.Fatalf("mail links %v, want one %s%s?token=… link", links, dashboard, path)
	}
	u, err := url.Parse(links[0])
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

// recordingDestroyer is a CapsuleDestroyer test double: it records teams and, like the capsules
// service, records their live capsules stopped.
type recordingDestroyer struct {
	env   *cptest.Env
	mu    sync.Mutex
	teams []uuid.UUID
	fail  error
}

func (d *recordingDestroyer) DestroyTeamCapsules(ctx context.Context, team uuid.UUID) error {
	d.mu.Lock()
	d.teams = append(d.teams, team)
	fail := d.fail
	d.mu.Unlock()
	if fail != nil {
		return fail
	}
	_, err := d.env.Store.Pool().Exec(ctx,
		`UPDATE capsules SET status = 'stopped', stopped_at = now() WHERE team_id = $1 AND status NOT IN ('stopped', 'error')`, team)
	return err
}

func (d *recordingDestroyer) DeleteTeamTemplates(ctx context.Context, team uuid.UUID) error {
	_, err := d.env.Store.DeleteTemplatesByTeam(ctx, team)
	return err
}

func (d *recordingDestroyer) setFail(err error) {
	d.mu.Lock()
	d.fail = err
	d.mu.Unlock()
}

func (d *recordingDestroyer) list() []uuid.UUID {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.teams)
}

func (d *recordingDestroyer) called(team uuid.UUID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.teams, team)
}

type fixture struct {
	*cptest.Env
	svc    *accounts.Service
	mailer *recordingMailer
	caps   *recordingDestroyer
}

// newFixture is a control plane with the accounts routes and a probe route of kind KEY|JWT under
// /v1/capsules that answers the caller's team (for checking API keys and JWTs).
func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith is newFixture with mod applied to the accounts Config.
func newFixtureWith(t *testing.T, mod func(*accounts.Config)) *fixture {
	t.Helper()
	return newFixtureEnv(t, func(_ *cptest.Env, c *accounts.Config) {
		if mod != nil {
			mod(c)
		}
	})
}

// newFixtureEnv is newFixture with mod applied to the accounts Config; mod sees the environment (its
// server URL).
func newFixtureEnv(t *testing.T, mod func(*cptest.Env, *accounts.Config)) *fixture {
	t.Helper()
	env := cptest.New(t)
	f := &fixture{Env: env, mailer: newRecordingMailer(), caps: &recordingDestroyer{env: env}}
	cfg := accounts.Config{
		Store: env.Store, Signer: env.Signer, Mailer: f.mailer, DashboardURL: dashboard + "/", Capsules: f.caps,
	}
	mod(env, &cfg)
	svc, err := accounts.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	svc.Register(env.Router)
	env.Router.Handle(http.MethodGet, "/v1/capsules/probe", auth.KindKeyOrJWT, func(w http.ResponseWriter, r *http.Request) {
		id := httpapi.Identity(r)
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"team_id": id.TeamID, "user_id": id.UserID, "api_key_id": id.APIKeyID})
	})
	return f
}

// expect checks a response's status and, for errors, its code.
func expect(t *testing.T, res cptest.Response, status int, code string) {
	t.Helper()
	if res.Status != status || res.ErrorCode() != code {
		t.Fatalf("got %d %q, want %d %q; body %s", res.Status, res.ErrorCode(), status, code, res.Body)
	}
}

// message returns error.message of an error body.
func message(t *testing.T, res cptest.Response) string {
	t.Helper()
	var e struct {
		Error struct{ Message string } `json:"error"`
	}
	res.JSON(t, &e)
	return e.Error.Message
}

// setPassword gives a user a password.
func (f *fixture) setPassword(t *testing.T, user uuid.UUID, pw string) {
	t.Helper()
	h, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Store.SetUserPassword(context.Background(), db.SetUserPasswordParams{PasswordHash: h, ID: user}); err != nil {
		t.Fatal(err)
	}
}

// member adds a new account to a's team with role and returns it with a JWT scoped to that team.
func (f *fixture) member(t *testing.T, a cptest.Account, name string, role auth.Role) cptest.Account {
	t.Helper()
	m := f.NewAccount(t, name, false)
	f.AddMember(t, a.Team, m.User, role)
	m.JWT = f.JWT(t, m.User, a.Team, role)
	m.Role = role
	return m
}

// exec runs SQL on the test database.
func (f *fixture) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := f.Store.Pool().Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// count runs a SELECT count(*) … query.
func (f *fixture) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := f.Store.Pool().QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// auditCount counts audit entries of action on team with scope admin.
func (f *fixture) auditCount(t *testing.T, team uuid.UUID, action string) int {
	t.Helper()
	return f.count(t, `SELECT count(*) FROM audit_logs WHERE team_id = $1 AND action = $2 AND scope = 'admin'`, team, action)
}

func (f *fixture) user(t *testing.T, id uuid.UUID) db.User {
	t.Helper()
	u, err := f.Store.GetUserByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func parseUser(t *testing.T, s string) uuid.UUID {
	t.Helper()
	u, err := ids.User.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func parseTeam(t *testing.T, s string) uuid.UUID {
	t.Helper()
	u, err := ids.Team.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

var errMailDown = errors.New("mail server down")
