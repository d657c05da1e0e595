package guest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"
	"github.com/google/uuid"
	"go.uber.org/goleak"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/guest"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// Timing of the PTY sockets in these tests.
const (
	idleTimeout  = 3 * time.Second
	pingInterval = 400 * time.Millisecond
)

// testAgents is a fleet of one agent.
type testAgents struct {
	api hostagentv1connect.HostAgentServiceClient
}

func (a testAgents) Agent(context.Context, uuid.UUID) (hostagentv1connect.HostAgentServiceClient, error) {
	return a.api, nil
}

// fixture is the shared world of the guest tests: a control plane with the guest routes, a real
// agent, two teams (alice owns a running capsule, bob does not), a platform admin and a running
// platform capsule whose default user is "user".
type fixture struct {
	env      *cptest.Env
	host     *agenthost.Host
	hostID   uuid.UUID
	alice    cptest.Account
	bob      cptest.Account
	admin    cptest.Account
	capsule  string // alice's capsule
	capsuleU uuid.UUID
	platform string // the platform team's capsule
}

func TestGuest(t *testing.T) {
	testutil.Integration(t)
	// Runs last: after the agent, the server and the database are gone, no goroutine of the
	// service (socket readers, stream relays, PTY host calls) may be left.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		// The shared PostgreSQL cluster lives until TestMain ends.
		goleak.VerifyNone(t, before, goleak.IgnoreAnyFunction("github.com/wrenn/wrenn/internal/cli/pgcluster.(*Cluster).StartChild.func1"))
	})
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *fixture)
	}{
		{"Exec", testExec},
		{"ExecErrors", testExecErrors},
		{"Background", testBackground},
		{"Kill", testKill},
		{"ProcessStream", testProcessStream},
		{"ProcessStreamErrors", testProcessStreamErrors},
		{"ExecStream", testExecStream},
		{"Files", testFiles},
		{"FileErrors", testFileErrors},
		{"WriteOwnershipFirst", testWriteOwnershipFirst},
		{"StreamedTransfer", testStreamedTransfer},
		{"PTY", testPTY},
		{"PTYErrors", testPTYErrors},
		{"PTYInactivity", testPTYInactivity},
		{"WebSocketAuth", testWebSocketAuth},
		{"Preconditions", testPreconditions},
		{"TenantIsolation", testTenantIsolation},
		{"Admin", testAdmin},
		{"Activity", testActivity},
	} {
		if !t.Run(tc.name, func(t *testing.T) { tc.run(t, f) }) && testing.Verbose() {
			t.Logf("agent log tail:\n%s", f.host.LogTail())
		}
	}
}

func newFixture(t *testing.T) *fixture {
	env := cptest.New(t)
	h := agenthost.Start(t, agenthost.Options{})
	f := &fixture{env: env, host: h}
	ctx := context.Background()

	host, err := env.Store.CreateHost(ctx, db.CreateHostParams{Type: "regular"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.RegisterHost(ctx, db.RegisterHostParams{ID: host.ID, Address: h.Addr}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Store.MarkHostOnline(ctx, host.ID); err != nil {
		t.Fatal(err)
	}
	f.hostID = host.ID
	res := &capsules.Resolver{Store: env.Store, Agents: testAgents{api: h.API}, Log: slog.Default()}
	svc, err := guest.New(guest.Config{Resolver: res, PTYIdleTimeout: idleTimeout, PTYPingInterval: pingInterval})
	if err != nil {
		t.Fatal(err)
	}
	svc.Register(env.Router)

	f.alice = env.NewAccount(t, "alice", false)
	f.bob = env.NewAccount(t, "bob", false)
	f.admin = env.NewAccount(t, "root", true)
	f.capsuleU, f.capsule = f.newCapsule(t, f.alice.Team, "root")
	_, f.platform = f.newCapsule(t, store.PlatformTeamID, "user")
	return f
}

// newCapsule inserts a running capsule row of team on the fixture's host and boots it on the agent
// ("minimal" image, default user user); the capsule is destroyed when the test ends.
func (f *fixture) newCapsule(t *testing.T, team uuid.UUID, user string) (uuid.UUID, string) {
	t.Helper()
	ctx := context.Background()
	row, err := f.env.Store.CreateCapsule(ctx, db.CreateCapsuleParams{
		TeamID: team, TemplateName: "minimal", HostID: &f.hostID, VCPUs: 1, MemoryMB: 256, DiskMB: 1024, DefaultUser: user,
	})
	if err != nil {
		t.Fatal(err)
	}
	id := ids.Capsule.Format(row.ID)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := f.host.API.CreateSandbox(cctx, connect.NewRequest(&hav1.CreateSandboxRequest{
		SandboxId: id, Vcpus: 1, MemoryMb: 256, DiskSizeMb: 1024, TeamId: team.String(), TemplateId: "minimal", DefaultUser: user,
	})); err != nil {
		t.Fatalf("create capsule on the agent: %v\n%s", err, f.host.LogTail())
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := f.host.API.DestroySandbox(dctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id})); err != nil {
			t.Errorf("destroy %s: %v", id, err)
		}
	})
	if _, err := f.env.Store.SetCapsuleRunning(ctx, db.SetCapsuleRunningParams{
		ID: row.ID, HostID: &f.hostID, FromStatuses: []string{store.CapsulePending},
	}); err != nil {
		t.Fatal(err)
	}
	return row.ID, id
}

// base is the route prefix of alice's capsule.
func (f *fixture) base() string { return "/v1/capsules/" + f.capsule }

// key is alice's API key credential.
func (f *fixture) key() cptest.Cred { return cptest.Key(f.alice.APIKey) }

// do calls the API and checks the status; it returns the response.
func (f *fixture) do(t *testing.T, method, path string, cred cptest.Cred, body any, status int) cptest.Response {
	t.Helper()
	res := f.env.Do(t, method, path, cred, body)
	if res.Status != status {
		t.Fatalf("%s %s: got %d %s, want %d", method, path, res.Status, res.Body, status)
	}
	return res
}

// wantError checks an error answer's status, code and (when msg is not "") message.
func wantError(t *testing.T, res cptest.Response, status int, code, msg string) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(res.Body, &e)
	if res.Status != status || e.Error.Code != code || (msg != "" && e.Error.Message != msg) {
		t.Fatalf("got %d %s, want %d %s %q", res.Status, res.Body, status, code, msg)
	}
}

// execResult is the foreground exec answer.
type execResult struct {
	CapsuleID  string `json:"capsule_id"`
	SandboxID  string `json:"sandbox_id"`
	Cmd        string `json:"cmd"`
	Stdout     string `json:"stdout"`
	Stderr     string `json:"stderr"`
	ExitCode   int    `json:"exit_code"`
	DurationMS *int64 `json:"duration_ms"`
	Encoding   string `json:"encoding"`
}

// sh runs a shell line in alice's capsule and returns its stdout; it fails on a non-zero exit.
func (f *fixture) sh(t *testing.T, line string) string {
	t.Helper()
	res := f.do(t, "POST", f.base()+"/exec", f.key(), map[string]any{"cmd": "/bin/sh", "args": []string{"-c", line}}, 200)
	var r execResult
	res.JSON(t, &r)
	if r.ExitCode != 0 {
		t.Fatalf("%q exited %d: %s", line, r.ExitCode, res.Body)
	}
	return r.Stdout
}

// multipartBody is a multipart request body with its Content-Type (cptest sets it).
type multipartBody struct {
	*bytes.Buffer
	contentType string
}

func (m *multipartBody) ContentType() string { return m.contentType }

// upload is a files/write body; fileFirst puts the file part before the path field.
func upload(t *testing.T, path string, content []byte, fileFirst bool) *multipartBody {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	writePath := func() {
		if path != "" {
			_ = w.WriteField("path", path)
		}
	}
	if !fileFirst {
		writePath()
	}
	if content != nil {
		fw, err := w.CreateFormFile("file", "f")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(content)
	}
	if fileFirst {
		writePath()
	}
	_ = w.Close()
	return &multipartBody{Buffer: &buf, contentType: w.FormDataContentType()}
}

// frame is any server frame.
type frame struct {
	Type        string  `json:"type"`
	Code        string  `json:"code"`
	Data        string  `json:"data"`
	Fatal       bool    `json:"fatal"`
	PID         uint32  `json:"pid"`
	Tag         string  `json:"tag"`
	Offset      *uint64 `json:"offset"`
	ExitCode    *int    `json:"exit_code"`
	Reconnected bool    `json:"reconnected"`
}

// wsConn is a test WebSocket client.
type wsConn struct {
	t    *testing.T
	conn *websocket.Conn
}

func wsURL(f *fixture, path string) string {
	return "ws" + strings.TrimPrefix(f.env.Server.URL, "http") + path
}

// dialWS opens a WebSocket with header credentials (none for a zero Cred).
func dialWS(t *testing.T, f *fixture, path string, cred cptest.Cred) (*wsConn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	switch {
	case cred.APIKey != "":
		h.Set("X-API-Key", cred.APIKey)
	case cred.JWT != "":
		h.Set("Authorization", "Bearer "+cred.JWT)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, res, err := websocket.Dial(ctx, wsURL(f, path), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, res, err
	}
	conn.SetReadLimit(8 << 20)
	c := &wsConn{t: t, conn: conn}
	t.Cleanup(func() { _ = conn.CloseNow() })
	return c, res, nil
}

// mustDial is dialWS that fails the test on error.
func mustDial(t *testing.T, f *fixture, path string, cred cptest.Cred) *wsConn {
	t.Helper()
	c, res, err := dialWS(t, f, path, cred)
	if err != nil {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", path, err, status)
	}
	return c
}

// dialStatus dials a WebSocket that must be refused with an HTTP error and returns its status and
// error code.
func dialStatus(t *testing.T, f *fixture, path string, cred cptest.Cred) (int, string) {
	t.Helper()
	_, res, err := dialWS(t, f, path, cred)
	if err == nil {
		t.Fatalf("dial %s: upgraded, want an HTTP error", path)
	}
	if res == nil {
		t.Fatalf("dial %s: %v without a response", path, err)
	}
	var body []byte
	if res.Body != nil {
		body, _ = io.ReadAll(res.Body)
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return res.StatusCode, e.Error.Code
}

func (c *wsConn) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame, skipping pings.
func (c *wsConn) next() frame {
	c.t.Helper()
	for {
		f, err := c.read(30 * time.Second)
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if f.Type != "ping" {
			return f
		}
	}
}

// read returns the next frame (pings included) or the read error.
func (c *wsConn) read(timeout time.Duration) (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, b, err := c.conn.Read(ctx)
	if err != nil {
		return frame{}, err
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		c.t.Fatalf("frame %s: %v", b, err)
	}
	return f, nil
}

// expectClosed checks that the server closes the socket with code next (skipping pings).
func (c *wsConn) expectClosed(code websocket.StatusCode) {
	c.t.Helper()
	for {
		f, err := c.read(30 * time.Second)
		if err == nil {
			if f.Type == "ping" {
				continue
			}
			c.t.Fatalf("frame %+v, want close %d", f, code)
		}
		if got := websocket.CloseStatus(err); got != code {
			c.t.Fatalf("closed with %v (%v), want %d", got, err, code)
		}
		return
	}
}

// expectFatal checks the next frame is a fatal error of code and that the socket then closes.
func (c *wsConn) expectFatal(code string) frame {
	c.t.Helper()
	f := c.next()
	if f.Type != "error" || f.Code != code || !f.Fatal {
		c.t.Fatalf("frame %+v, want fatal error %s", f, code)
	}
	want := websocket.StatusNormalClosure
	if code == "internal_error" || code == "agent_error" || code == "host_unavailable" || code == "timeout" {
		want = websocket.StatusInternalError
	}
	c.expectClosed(want)
	return f
}

// collect reads output frames until pred holds on the concatenated data of the given type.
func (c *wsConn) collect(typ string, pred func(string) bool) string {
	c.t.Helper()
	var sb strings.Builder
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		f := c.next()
		if f.Type == "error" {
			c.t.Fatalf("error frame %+v while collecting %s (have %q)", f, typ, sb.String())
		}
		if f.Type == typ {
			sb.WriteString(f.Data)
			if pred(sb.String()) {
				return sb.String()
			}
		}
	}
	c.t.Fatalf("%s never matched: %q", typ, sb.String())
	return ""
}

// eventually retries check until it passes or 20 s pass.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tempFile returns a path under a fresh directory of alice's capsule, removed at the end.
func (f *fixture) tempDir(t *testing.T) string {
	t.Helper()
	dir := "/tmp/" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-") + "-" + testutil.RandomName("", 4)
	f.sh(t, "mkdir -p "+dir)
	t.Cleanup(func() { f.env.Do(t, "POST", f.base()+"/files/remove", f.key(), map[string]string{"path": dir}) })
	return dir
}
