// Package platform starts a whole Wrenn platform for integration tests: real PostgreSQL (a fresh
// database), one or more real control planes (wrenn-cp) and real host agents (wrenn-agent with gVisor
// capsules) registered over the API and called over mutual TLS. Test suites under tests/ share it.
package platform

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

// Secret is the control planes' JWT secret.
const Secret = "tests-cp-secret-0123456789abcdefghijkl"

// Platform is one test's control planes, database and hosts.
type Platform struct {
	t      testing.TB
	DSN    string // the fresh database
	CPBin  string // the wrenn-cp binary
	Dir    string // logs and scratch files
	CPs    []*ControlPlane
	Admin  string   // admin JWT (admin@example.test / admin-password)
	Key    string   // admin team API key
	TeamID string   // admin's team
	CPArgs []string // extra wrenn-cp serve flags (they override the harness's)
	// AgentArgs are extra wrenn-agent flags of the hosts started from now on (-dns, -egress-allow, …).
	AgentArgs []string
}

// ControlPlane is one running wrenn-cp.
type ControlPlane struct {
	t       testing.TB
	Port    int
	URL     string
	cmd     *exec.Cmd
	exited  chan struct{}
	LogPath string
}

// New starts PostgreSQL (a fresh database), n control planes on 0.0.0.0:<port> (agents in
// network namespaces reach them through their veth), and bootstraps an admin with an API key.
func New(t testing.TB, n int, cpArgs ...string) *Platform {
	t.Helper()
	testutil.Integration(t)
	p := &Platform{t: t, DSN: testutil.Postgres(t), CPBin: testutil.BuildBinary(t, "./cmd/wrenn-cp"), Dir: t.TempDir(), CPArgs: cpArgs}
	out, err := exec.Command(p.CPBin, "bootstrap", "--database-url", p.DSN, "--email", "admin@example.test",
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
	p.Key, p.TeamID = boot.APIKey, boot.TeamID
	for range n {
		p.CPs = append(p.CPs, p.StartCP(0))
	}
	res := cptest.Call(t, p.URL(), "POST", "/v1/auth/login", cptest.Cred{}, map[string]string{"email": "admin@example.test", "password": "admin-password"})
	if res.Status != 200 {
		t.Fatalf("login: %d %s", res.Status, res.Body)
	}
	var ar struct{ Token string }
	res.JSON(t, &ar)
	p.Admin = ar.Token
	return p
}

// URL is the first live control plane's base URL.
func (p *Platform) URL() string {
	for _, c := range p.CPs {
		if c.Running() {
			return c.URL
		}
	}
	p.t.Fatal("no control plane running")
	return ""
}

// StartCP starts a control plane (port 0 = a free one) and waits for /health.
func (p *Platform) StartCP(port int) *ControlPlane {
	t := p.t
	t.Helper()
	if port == 0 {
		port = testutil.FreePort(t)
	}
	c := &ControlPlane{t: t, Port: port, URL: fmt.Sprintf("http://127.0.0.1:%d", port)}
	c.LogPath = filepath.Join(p.Dir, fmt.Sprintf("cp-%d-%d.log", port, time.Now().UnixNano()))
	logf, err := os.Create(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(p.CPBin, "serve", "--database-url", p.DSN, "--listen", fmt.Sprintf("0.0.0.0:%d", port),
		"--secret", Secret, "--heartbeat-timeout", "4s", "--monitor-interval", "1s", "--reconcile-interval", "1s",
		"--stats-interval", "1s", "--log-level", "debug")
	c.cmd.Args = append(c.cmd.Args, p.CPArgs...)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.exited = make(chan struct{})
	go func() { _ = c.cmd.Wait(); logf.Close(); close(c.exited) }()
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("control plane %d log:\n%s", port, c.LogTail())
		}
	})
	Eventually(t, 120*time.Second, "control plane /health", func() error {
		select {
		case <-c.exited:
			t.Fatalf("control plane exited:\n%s", c.LogTail())
		default:
		}
		res, err := HTTPGet(c.URL + "/health")
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

func (c *ControlPlane) Running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// Kill ends the control plane with SIGKILL.
func (c *ControlPlane) Kill() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// Stop ends the control plane with SIGTERM (SIGKILL after 30 s).
func (c *ControlPlane) Stop() {
	if !c.Running() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.Kill()
	}
}

// LogTail is the last 24 KiB of the control plane's log.
func (c *ControlPlane) LogTail() string {
	b, _ := os.ReadFile(c.LogPath)
	if len(b) > 24<<10 {
		b = b[len(b)-24<<10:]
	}
	return string(b)
}

// Node is a registered host: its agent and its host id.
type Node struct {
	ID    string
	Agent *agenthost.Host
	Netns *testutil.Netns
}

// AddHost creates a regular host through the API, starts an agent that registers with its token and
// waits until the host is online. With netns the agent runs inside a new network namespace and reaches
// the control plane through the namespace's veth; otherwise on loopback.
func (p *Platform) AddHost(t testing.TB, inNetns bool) *Node {
	t.Helper()
	n := p.StartHost(t, inNetns)
	p.WaitHost(t, n.ID, "online")
	return n
}

// StartHost is AddHost without the wait: the agent is starting.
func (p *Platform) StartHost(t testing.TB, inNetns bool) *Node {
	t.Helper()
	res := cptest.Call(t, p.URL(), "POST", "/v1/hosts", cptest.Bearer(p.Admin), map[string]any{"type": "regular"})
	if res.Status != 201 {
		t.Fatalf("create host: %d %s", res.Status, res.Body)
	}
	var created struct {
		Host              struct{ ID string } `json:"host"`
		RegistrationToken string              `json:"registration_token"`
	}
	res.JSON(t, &created)
	n := &Node{ID: created.Host.ID}
	cpURL := p.URL()
	opts := agenthost.Options{NoWait: true}
	if inNetns {
		ns := testutil.NewNetns(t)
		n.Netns = &ns
		opts.Netns = ns.Name
		opts.Addr = fmt.Sprintf("%s:%d", ns.InsideIP, 9900)
		cpURL = fmt.Sprintf("http://%s:%d", ns.HostIP, p.CPs[0].Port)
	}
	opts.Args = []string{"-control-plane", cpURL, "-registration-token", created.RegistrationToken, "-heartbeat-interval", "1s"}
	opts.Args = append(opts.Args, p.AgentArgs...)
	n.Agent = agenthost.Start(t, opts)
	return n
}

// WaitHost waits until the host has status.
func (p *Platform) WaitHost(t testing.TB, id, status string) {
	t.Helper()
	Eventually(t, 60*time.Second, "host "+id+" "+status, func() error {
		res := cptest.Call(t, p.URL(), "GET", "/v1/hosts/"+id, cptest.Bearer(p.Admin), nil)
		var h struct{ Status string }
		_ = json.Unmarshal(res.Body, &h)
		if h.Status != status {
			return fmt.Errorf("status %q (%d %s)", h.Status, res.Status, res.Body)
		}
		return nil
	})
}

// Eventually calls f until it returns nil, failing the test with f's last error after d.
func Eventually(t testing.TB, d time.Duration, what string, f func() error) {
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

// HTTPGet GETs url and returns the body; a status other than 200 is an error.
func HTTPGet(url string) (string, error) {
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
