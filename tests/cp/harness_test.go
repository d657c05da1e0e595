// Package cp_test drives the real control plane binary (wrenn-cp) against real PostgreSQL and real host
// agents (wrenn-agent with real gVisor capsules), registered over the API and called over mutual TLS.
package cp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func TestMain(m *testing.M) { testutil.Main(m) }

const secret = "tests-cp-secret-0123456789abcdefghijkl"

// platform is one test's control planes, database and hosts.
type platform struct {
	t      testing.TB
	dsn    string
	cpBin  string
	dir    string
	cps    []*controlPlane
	admin  string // admin JWT
	key    string // admin team API key
	teamID string
	cpArgs []string // extra wrenn-cp serve flags (they override the harness's)
}

type controlPlane struct {
	t       testing.TB
	port    int
	URL     string
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// newPlatform starts PostgreSQL (a fresh database), n control planes on 0.0.0.0:<port> (agents in
// network namespaces reach them through their veth), and bootstraps an admin with an API key.
func newPlatform(t testing.TB, n int, cpArgs ...string) *platform {
	t.Helper()
	testutil.Integration(t)
	p := &platform{t: t, dsn: testutil.Postgres(t), cpBin: testutil.BuildBinary(t, "./cmd/wrenn-cp"), dir: t.TempDir(), cpArgs: cpArgs}
	out, err := exec.Command(p.cpBin, "bootstrap", "--database-url", p.dsn, "--email", "admin@example.test",
		"--password", "admin-password", "--name", "Admin", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	var boot struct {
		UserID string `json:"user_id"`
		TeamID string `json:"team_id"`
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &boot); err != nil {
		t.Fatalf("bootstrap output %q: %v", out, err)
	}
	p.key, p.teamID = boot.APIKey, boot.TeamID
	for range n {
		p.cps = append(p.cps, p.startCP(0))
	}
	res := cptest.Call(t, p.URL(), "POST", "/v1/auth/login", cptest.Cred{}, map[string]string{"email": "admin@example.test", "password": "admin-password"})
	if res.Status != 200 {
		t.Fatalf("login: %d %s", res.Status, res.Body)
	}
	var ar struct{ Token string }
	res.JSON(t, &ar)
	p.admin = ar.Token
	return p
}

// URL is the first live control plane's base URL.
func (p *platform) URL() string {
	for _, c := range p.cps {
		if c.running() {
			return c.URL
		}
	}
	p.t.Fatal("no control plane running")
	return ""
}

// startCP starts a control plane (port 0 = a free one) and waits for /health.
func (p *platform) startCP(port int) *controlPlane {
	t := p.t
	t.Helper()
	if port == 0 {
		port = testutil.FreePort(t)
	}
	c := &controlPlane{t: t, port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	c.logPath = filepath.Join(p.dir, fmt.Sprintf("cp-%d-%d.log", port, time.Now().UnixNano()))
	logf, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(p.cpBin, "serve", "--database-url", p.dsn, "--listen", fmt.Sprintf("0.0.0.0:%d", port),
		"--secret", secret, "--heartbeat-timeout", "4s", "--monitor-interval", "1s", "--reconcile-interval", "1s",
		"--stats-interval", "1s", "--log-level", "debug")
	c.cmd.Args = append(c.cmd.Args, p.cpArgs...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.exited = make(chan struct{})
	go func() { _ = c.cmd.Wait(); logf.Close(); close(c.exited) }()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("control plane %d log:\n%s", port, c.logTail())
		}
	})
	eventually(t, 120*time.Second, "control plane /health", func() error {
		select {
		case <-c.exited:
			t.Fatalf("control plane exited:\n%s", c.logTail())
		default:
		}
		res, err := httpGet(c.URL + "/health")
		if err != nil {
			return err
		}
		if !strings.Contains(res, `"ok"`) {
			return fmt.Errorf("health %s", res)
		}
		return nil
	})
	return c
}

func (c *controlPlane) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

func (c *controlPlane) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

func (c *controlPlane) stop() {
	if !c.running() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.kill()
	}
}

func (c *controlPlane) logTail() string {
	b, _ := os.ReadFile(c.logPath)
	if len(b) > 24<<10 {
		b = b[len(b)-24<<10:]
	}
	return string(b)
}

// node is a registered host: its agent and its host id.
type node struct {
	ID    string
	Agent *agenthost.Host
	Netns *testutil.Netns
}

// addHost creates a regular host through the API, starts an agent that registers with its token and
// waits until the host is online. With netns the agent runs inside a new network namespace and reaches
// the control plane through the namespace's veth; otherwise on loopback.
func (p *platform) addHost(t testing.TB, inNetns bool) *node {
	t.Helper()
	n := p.startHost(t, inNetns)
	p.waitHost(t, n.ID, "online")
	return n
}

// startHost is addHost without the wait: the agent is starting.
func (p *platform) startHost(t testing.TB, inNetns bool) *node {
	t.Helper()
	res := cptest.Call(t, p.URL(), "POST", "/v1/hosts", cptest.Bearer(p.admin), map[string]any{"type": "regular"})
	if res.Status != 201 {
		t.Fatalf("create host: %d %s", res.Status, res.Body)
	}
	var created struct {
		Host              struct{ ID string } `json:"host"`
		RegistrationToken string              `json:"registration_token"`
	}
	res.JSON(t, &created)
	n := &node{ID: created.Host.ID}
	cpURL := p.URL()
	opts := agenthost.Options{NoWait: true}
	if inNetns {
		ns := testutil.NewNetns(t)
		n.Netns = &ns
		opts.Netns = ns.Name
		opts.Addr = fmt.Sprintf("%s:%d", ns.InsideIP, 9900)
		cpURL = fmt.Sprintf("http://%s:%d", ns.HostIP, p.cps[0].port)
	}
	opts.Args = []string{"-control-plane", cpURL, "-registration-token", created.RegistrationToken, "-heartbeat-interval", "1s"}
	n.Agent = agenthost.Start(t, opts)
	return n
}

// waitHost waits until the host has status.
func (p *platform) waitHost(t testing.TB, id, status string) {
	t.Helper()
	eventually(t, 60*time.Second, "host "+id+" "+status, func() error {
		res := cptest.Call(t, p.URL(), "GET", "/v1/hosts/"+id, cptest.Bearer(p.admin), nil)
		var h struct{ Status string }
		_ = json.Unmarshal(res.Body, &h)
		if h.Status != status {
			return fmt.Errorf("status %q (%d %s)", h.Status, res.Status, res.Body)
		}
		return nil
	})
}

func eventually(t testing.TB, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	return string(b), err
}
