package capsules_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// fakeAgents hands out the plain client of the test's agent for its host; a host marked down is
// unreachable.
type fakeAgents struct {
	mu      sync.Mutex
	clients map[uuid.UUID]hostagentv1connect.HostAgentServiceClient
	down    map[uuid.UUID]bool
}

func (f *fakeAgents) Agent(_ context.Context, host uuid.UUID) (hostagentv1connect.HostAgentServiceClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[host]
	if !ok || f.down[host] {
		return nil, apierr.HostUnavailable("sandbox host is not reachable")
	}
	return c, nil
}

func (f *fakeAgents) setDown(host uuid.UUID, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[host] = down
}

// fakeScheduler places every capsule on one host, or answers no_capacity without one.
type fakeScheduler struct{ host *db.Host }

func (f fakeScheduler) Pick(context.Context, uuid.UUID, int32, int32, ...uuid.UUID) (db.Host, error) {
	if f.host == nil {
		return db.Host{}, apierr.NoCapacity("no online host can fit the capsule")
	}
	return *f.host, nil
}

// fixture is a control plane with the capsules service on a real database, and (withAgent) a real
// agent registered as an online host.
type fixture struct {
	env    *cptest.Env
	svc    *capsules.Service
	agents *fakeAgents
	agent  *agenthost.Host // nil without agent
	host   db.Host
	alice  cptest.Account
	bob    cptest.Account
	admin  cptest.Account
}

func newFixture(t *testing.T, withAgent bool) *fixture {
	t.Helper()
	return newFixtureQuota(t, withAgent, capsules.Quota{})
}

// newFixtureQuota is newFixture with quota as every team's default quota.
func newFixtureQuota(t *testing.T, withAgent bool, quota capsules.Quota) *fixture {
	t.Helper()
	f := &fixture{env: cptest.New(t), agents: &fakeAgents{
		clients: map[uuid.UUID]hostagentv1connect.HostAgentServiceClient{}, down: map[uuid.UUID]bool{},
	}}
	sched := fakeScheduler{}
	if withAgent {
		f.agent = agenthost.Start(t, agenthost.Options{})
		ctx := context.Background()
		h, err := f.env.Store.CreateHost(ctx, db.CreateHostParams{Type: store.HostRegular})
		if err != nil {
			t.Fatal(err)
		}
		if _, err = f.env.Store.RegisterHost(ctx, db.RegisterHostParams{ID: h.ID, Address: f.agent.Addr}); err != nil {
			t.Fatal(err)
		}
		if _, err = f.env.Store.MarkHostOnline(ctx, h.ID); err != nil {
			t.Fatal(err)
		}
		if f.host, err = f.env.Store.GetHost(ctx, h.ID); err != nil {
			t.Fatal(err)
		}
		f.agents.clients[f.host.ID] = f.agent.API
		sched.host = &f.host
	}
	svc, err := capsules.New(capsules.Config{Store: f.env.Store, Agents: f.agents, Scheduler: sched, Quota: quota})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	svc.Register(f.env.Router)
	f.alice = f.env.NewAccount(t, "alice", false)
	f.bob = f.env.NewAccount(t, "bob", false)
	f.admin = f.env.NewAccount(t, "root", true)
	if withAgent {
		// Registered after the agent, so it runs first: nothing is left for the agent's leak check.
		t.Cleanup(func() { f.destroyAll(t) })
	}
	return f
}

// destroyAll destroys every capsule that is not stopped, through the service.
func (f *fixture) destroyAll(t *testing.T) {
	rows, err := f.env.Store.Pool().Query(context.Background(), `SELECT team_id FROM capsules WHERE status NOT IN ('stopped', 'error') GROUP BY team_id`)
	if err != nil {
		t.Errorf("list teams with capsules: %v", err)
		return
	}
	var teams []uuid.UUID
	for rows.Next() {
		var u uuid.UUID
		if err := rows.Scan(&u); err == nil {
			teams = append(teams, u)
		}
	}
	rows.Close()
	f.agents.setDown(f.host.ID, false)
	for _, team := range teams {
		if err := f.svc.DestroyTeamCapsules(context.Background(), team); err != nil {
			t.Errorf("destroy capsules of team %s: %v", team, err)
		}
	}
}

// do calls the API and checks the status (0 = any).
func (f *fixture) do(t *testing.T, want int, method, path string, cred cptest.Cred, body any) cptest.Response {
	t.Helper()
	res := f.env.Do(t, method, path, cred, body)
	if want != 0 && res.Status != want {
		t.Fatalf("%s %s = %d %s; want %d", method, path, res.Status, res.Body, want)
	}
	return res
}

// wantError checks an error answer's status and code, and optionally its message.
func (f *fixture) wantError(t *testing.T, status int, code, msg, method, path string, cred cptest.Cred, body any) {
	t.Helper()
	res := f.env.Do(t, method, path, cred, body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	res.JSON(t, &e)
	if res.Status != status || e.Error.Code != code || (msg != "" && e.Error.Message != msg) {
		t.Fatalf("%s %s = %d %s; want %d %s %q", method, path, res.Status, res.Body, status, code, msg)
	}
}

// create creates a capsule through the API and returns it.
func (f *fixture) create(t *testing.T, cred cptest.Cred, body any) capsules.Capsule {
	t.Helper()
	var c capsules.Capsule
	f.do(t, http.StatusCreated, http.MethodPost, "/v1/capsules", cred, body).JSON(t, &c)
	if c.Status != store.CapsuleRunning {
		t.Fatalf("created capsule is %s", c.Status)
	}
	return c
}

func (f *fixture) get(t *testing.T, cred cptest.Cred, id string) capsules.Capsule {
	t.Helper()
	var c capsules.Capsule
	f.do(t, http.StatusOK, http.MethodGet, "/v1/capsules/"+id, cred, nil).JSON(t, &c)
	return c
}

// exec runs a shell command in a capsule through the agent directly (the guest routes are another
// package's) and returns its stdout.
func (f *fixture) exec(t *testing.T, id, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := f.agent.API.Exec(ctx, connect.NewRequest(&hav1.ExecRequest{SandboxId: id, Cmd: "/bin/sh", Args: []string{"-c", script}}))
	if err != nil {
		t.Fatalf("exec %q in %s: %v", script, id, err)
	}
	if res.Msg.GetExitCode() != 0 {
		t.Fatalf("exec %q in %s: exit %d: %s", script, id, res.Msg.GetExitCode(), res.Msg.GetStderr())
	}
	return strings.TrimSpace(string(res.Msg.GetStdout()))
}

// status reads a capsule's status from the database.
func (f *fixture) status(t *testing.T, id string) string {
	t.Helper()
	u, err := ids.Capsule.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.env.Store.GetCapsuleByID(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return c.Status
}

// audits counts audit entries of action on resource (actor type "" = any).
func (f *fixture) audits(t *testing.T, action, resource, actorType string) int {
	t.Helper()
	var n int
	err := f.env.Store.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM audit_logs WHERE action = $1 AND resource_id = $2 AND ($3 = '' OR actor_type = $3)`,
		action, resource, actorType).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentStatus returns the status the agent lists a capsule with (ok=false: unknown to it).
func (f *fixture) agentStatus(t *testing.T, id string) (hav1.SandboxStatus, bool) {
	t.Helper()
	res, err := f.agent.API.ListSandboxes(context.Background(), connect.NewRequest(&hav1.ListSandboxesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range res.Msg.GetSandboxes() {
		if sb.GetSandboxId() == id {
			return sb.GetStatus(), true
		}
	}
	return 0, false
}
