// Package cli_test drives the real `wrenn` binary against a real platform: PostgreSQL, the control
// plane binary (wrenn-cp) and a host agent (wrenn-agent with real gVisor capsules) registered with a
// token the CLI itself created.
package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
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
)

func TestMain(m *testing.M) { testutil.Main(m) }

const (
	secret        = "tests-cli-secret-0123456789abcdefghijk"
	adminEmail    = "admin@example.test"
	adminPassword = "admin-password"
)

// platform is one test's database, control plane and (once added) host, plus the CLI's environment.
type platform struct {
	t      *testing.T
	dsn    string
	URL    string // control plane API
	wrenn  string // the CLI binary
	config string // WRENN_CONFIG
	home   string

	cp      *exec.Cmd
	exited  chan struct{}
	logPath string

	Host   *agenthost.Host
	HostID string
}

// newPlatform starts PostgreSQL (a fresh database) and a control plane on loopback, and bootstraps
// the admin account.
func newPlatform(t *testing.T) *platform {
	t.Helper()
	testutil.Integration(t)
	dir := t.TempDir()
	p := &platform{
		t:      t,
		dsn:    testutil.Postgres(t),
		wrenn:  testutil.BuildBinary(t, "./cmd/wrenn"),
		config: filepath.Join(dir, "config", "config.json"),
		home:   filepath.Join(dir, "home"),
	}
	if err := os.MkdirAll(p.home, 0o700); err != nil {
		t.Fatal(err)
	}
	cpBin := testutil.BuildBinary(t, "./cmd/wrenn-cp")
	if out, err := exec.Command(cpBin, "bootstrap", "--database-url", p.dsn, "--email", adminEmail,
		"--password", adminPassword, "--name", "Admin", "--json").CombinedOutput(); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}

	port := testutil.FreePort(t)
	p.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	p.logPath = filepath.Join(dir, "cp.log")
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cp = exec.Command(cpBin, "serve", "--database-url", p.dsn, "--listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--secret", secret, "--heartbeat-timeout", "4s", "--monitor-interval", "1s", "--reconcile-interval", "1s",
		"--stats-interval", "1s", "--log-level", "debug")
	p.cp.Stdout, p.cp.Stderr = logf, logf
	if err := p.cp.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cp.Wait(); logf.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.stopCP()
		if t.Failed() {
			t.Logf("control plane log:\n%s", tail(p.logPath, 24<<10))
		}
	})
	eventually(t, 120*time.Second, "control plane /health", func() error {
		select {
		case <-p.exited:
			t.Fatalf("control plane exited:\n%s", tail(p.logPath, 16<<10))
		default:
		}
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.URL + "/health")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("health: %s", res.Status)
		}
		return nil
	})
	return p
}

func (p *platform) stopCP() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cp.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cp.Process.Kill()
		<-p.exited
	}
}

// addHost creates a host with the CLI and starts an agent that registers with its token.
func (p *platform) addHost(t *testing.T) {
	t.Helper()
	var created struct {
		Host struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"host"`
		RegistrationToken string `json:"registration_token"`
	}
	p.okJSON(t, &created, "host", "create", "--type", "regular")
	if !strings.HasPrefix(created.Host.ID, "host-") || len(created.RegistrationToken) != 64 || created.Host.Status != "pending" {
		t.Fatalf("host create --json: %+v", created)
	}
	p.HostID = created.Host.ID
	p.Host = agenthost.Start(t, agenthost.Options{NoWait: true, Args: []string{
		"-control-plane", p.URL, "-registration-token", created.RegistrationToken, "-heartbeat-interval", "1s",
	}})
	eventually(t, 60*time.Second, "host online", func() error {
		var hosts []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		out, errOut, code := p.run(nil, "--json", "host", "ls")
		if code != 0 {
			return fmt.Errorf("host ls: exit %d: %s", code, errOut)
		}
		if err := json.Unmarshal([]byte(out), &hosts); err != nil {
			return err
		}
		for _, h := range hosts {
			if h.ID == p.HostID && h.Status == "online" {
				return nil
			}
		}
		return fmt.Errorf("hosts %+v", hosts)
	})
}

// environ is the CLI's environment: its own config file and home, no inherited Wrenn variables.
func (p *platform) environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WRENN_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "WRENN_CONFIG="+p.config, "HOME="+p.home)
	return append(env, extra...)
}

// result is one finished CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the CLI with stdin (nil: none) and returns its output and exit code.
func (p *platform) run(stdin io.Reader, args ...string) (string, string, int) {
	r := p.runEnv(nil, stdin, args...)
	return r.stdout, r.stderr, r.code
}

func (p *platform) runEnv(env []string, stdin io.Reader, args ...string) result {
	p.t.Helper()
	cmd := exec.Command(p.wrenn, args...)
	cmd.Env = p.environ(env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		p.t.Fatalf("wrenn %s: no exit after 3 minutes\nstdout: %s\nstderr: %s", strings.Join(args, " "), &stdout, &stderr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return result{stdout.String(), stderr.String(), 0}
	case errors.As(err, &ee):
		return result{stdout.String(), stderr.String(), ee.ExitCode()}
	}
	p.t.Fatalf("wrenn %s: %v", strings.Join(args, " "), err)
	return result{}
}

// ok runs the CLI and fails the test unless it exits 0 with an empty stderr.
func (p *platform) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := p.run(nil, args...)
	if code != 0 || errOut != "" {
		t.Fatalf("wrenn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// okJSON runs the CLI with --json and decodes its output into v.
func (p *platform) okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := p.ok(t, append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("wrenn --json %s: %q: %v", strings.Join(args, " "), out, err)
	}
}

// fails runs the CLI, expects exit code want and one line on stderr containing msg, and returns it.
func (p *platform) fails(t *testing.T, want int, msg string, args ...string) string {
	t.Helper()
	out, errOut, code := p.run(nil, args...)
	if code != want || !oneLine(errOut) || !strings.HasPrefix(errOut, "wrenn: ") || !strings.Contains(errOut, msg) {
		t.Fatalf("wrenn %s: exit %d, stderr %q (stdout %q); want exit %d and one line with %q",
			strings.Join(args, " "), code, errOut, out, want, msg)
	}
	return errOut
}

func oneLine(s string) bool { return strings.Count(s, "\n") == 1 && strings.HasSuffix(s, "\n") }

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
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
