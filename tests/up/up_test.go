// Package up_test runs the README's first command (`make run`, i.e. `wrenn up`) on this machine and
// drives the platform with the `wrenn` CLI: create, exec, shell through a pseudo-terminal, files in and
// out, snapshot → new capsule, pause, a full restart (capsules paused by the shutdown resume), resume,
// destroy — and checks that stopping leaves nothing behind.
package up_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/creack/pty"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// withBase says whether the run builds the Debian base template (downloads packages, a minute or
// more) and starts a capsule from it; `make test` sets WRENN_TEST_DEBOOTSTRAP=1.
func withBase() bool { return os.Getenv("WRENN_TEST_DEBOOTSTRAP") == "1" }

// env is one test's platform: the data directory, its `make run` and the CLI configuration.
type env struct {
	t       *testing.T
	root    string // module root: where `make run` runs
	dataDir string
	listen  string
	prefix  string
	subnet  string
	config  string // WRENN_CONFIG
	wrenn   string // bin/wrenn, built by make run
	run     *makeRun
}

// login is what `wrenn up` prints once ready.
type login struct {
	API, Admin, APIKey string
}

// makeRun is one `make run` in its own process group (as a terminal runs it).
type makeRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	ready  chan struct{} // closed at "Ready."
	done   chan struct{} // closed when make has exited
	err    error
	logged *os.File
}

func TestUp(t *testing.T) {
	testutil.Integration(t)
	e := newEnv(t)

	// First run: builds everything, sets up the database, the admin, the host.
	start := time.Now()
	first, _ := e.up(t, 20*time.Minute)
	t.Logf("first `make run` ready in %s (base template: %v)", time.Since(start).Round(time.Millisecond), withBase())
	if first.API != "http://"+e.listen || !strings.HasPrefix(first.APIKey, "wrn_") || !strings.Contains(first.Admin, " / ") {
		t.Fatalf("login lines: %+v", first)
	}

	a := e.create(t, "minimal")
	e.checkExec(t, a)
	e.checkShell(t, a)
	e.checkFiles(t, a)
	e.checkProxy(t, a)
	var c string
	if withBase() {
		c = e.create(t, "base")
		if out := e.ok(t, "capsule", "exec", c, "--", "python3", "-c", "print(6*7)"); out != "42\n" {
			t.Fatalf("python3 in base capsule: %q", out)
		}
	}

	// Snapshot: the capsule stays paused; a new capsule from the template has its files and processes.
	e.ok(t, "capsule", "exec", a, "--", "sh", "-c", "echo from-snapshot > /tmp/marker")
	tmpl := testutil.RandomName("up-", 8)
	if got := strings.TrimSpace(e.ok(t, "snapshot", "--name", tmpl, a)); got != tmpl {
		t.Fatalf("snapshot printed %q, want %q", got, tmpl)
	}
	e.waitStatus(t, a, "paused")
	b := e.create(t, tmpl)
	if out := e.ok(t, "capsule", "exec", b, "--", "cat", "/tmp/marker"); out != "from-snapshot\n" {
		t.Fatalf("capsule from template: marker %q", out)
	}
	// A background process in b must survive the restart (paused by the shutdown, resumed after).
	// Written by rename: a read (or the pause at shutdown) never sees a truncated file.
	e.ok(t, "capsule", "exec", "--background", "--tag", "ticker", b, "--", "sh", "-c", "while true; do date +%s > /tmp/tick.new; mv /tmp/tick.new /tmp/tick; sleep 1; done")

	// Resume a, then pause it explicitly: it stays paused across the restart.
	e.ok(t, "capsule", "resume", a)
	e.waitStatus(t, a, "running")
	e.ok(t, "capsule", "exec", a, "--", "sh", "-c", "echo before-pause > /tmp/paused")
	e.ok(t, "capsule", "pause", a)
	e.waitStatus(t, a, "paused")

	// Ctrl-C: agent, control plane and PostgreSQL stop; nothing of the platform is left running.
	e.stop(t)
	e.assertNoProcesses(t)

	// Second run: fast, same login, nothing rebuilt.
	start = time.Now()
	second, out := e.up(t, 5*time.Minute)
	t.Logf("second `make run` ready in %s", time.Since(start).Round(time.Millisecond))
	if second != first {
		t.Fatalf("second run printed another login: %+v, first %+v", second, first)
	}
	for _, redone := range []string{"creating a private cluster", "admin          created", "building"} {
		if strings.Contains(out, redone) {
			t.Fatalf("second run did first-run work (%q):\n%s", redone, out)
		}
	}
	e.waitStatus(t, b, "running")
	if out := e.eventually(t, "capsule", "exec", b, "--", "cat", "/tmp/marker"); out != "from-snapshot\n" {
		t.Fatalf("after restart: marker %q", out)
	}
	e.checkTicking(t, b)
	if c != "" {
		e.waitStatus(t, c, "running")
		e.ok(t, "capsule", "exec", c, "--", "true")
	}
	e.waitStatus(t, a, "paused")
	e.ok(t, "capsule", "resume", a)
	if out := e.ok(t, "capsule", "exec", a, "--", "cat", "/tmp/paused"); out != "before-pause\n" {
		t.Fatalf("resumed after restart: %q", out)
	}

	ids := []string{a, b}
	if c != "" {
		ids = append(ids, c)
	}
	e.ok(t, append([]string{"capsule", "rm"}, ids...)...)
	for _, id := range ids {
		e.waitStatus(t, id, "stopped")
	}
	e.ok(t, "template", "rm", tmpl)
	e.stop(t)
	e.assertNoProcesses(t)
	e.assertClean(t)
}

func newEnv(t *testing.T) *env {
	root := testutil.ModuleRoot(t)
	// Not t.TempDir(): its parent is private, and the postgres OS user must reach the data directory.
	dataDir, err := os.MkdirTemp("", "wrenn-up-test-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		t:       t,
		root:    root,
		dataDir: dataDir,
		listen:  fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)),
		prefix:  testutil.RandomName("wu", 4),
		subnet:  fmt.Sprintf("10.%d.0.0/16", 200+time.Now().UnixNano()%40),
		config:  filepath.Join(t.TempDir(), "config.json"),
		wrenn:   filepath.Join(root, "bin", "wrenn"),
	}
	t.Cleanup(e.cleanup)
	return e
}

// up runs `make run UP_FLAGS=…` exactly as the README says, waits for "Ready." and returns the
// login it printed and its output so far.
func (e *env) up(t *testing.T, timeout time.Duration) (login, string) {
	t.Helper()
	flags := []string{"--data-dir", e.dataDir, "--listen", e.listen, "--net-prefix", e.prefix, "--subnet", e.subnet}
	if !withBase() {
		flags = append(flags, "--no-base-template")
	}
	logf, err := os.OpenFile(filepath.Join(e.dataDir, "make-run.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r := &makeRun{ready: make(chan struct{}), done: make(chan struct{}), logged: logf}
	r.cmd = exec.Command("make", "run", "UP_FLAGS="+strings.Join(flags, " "))
	r.cmd.Dir = e.root
	r.cmd.Env = e.environ()
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	r.cmd.Stdout, r.cmd.Stderr = pw, pw
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.run = r
	go func() {
		r.err = r.cmd.Wait()
		pw.Close()
	}()
	go func() {
		defer close(r.done)
		defer logf.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.out.WriteString(line + "\n")
			r.mu.Unlock()
			fmt.Fprintln(logf, line)
			if line == "Ready." {
				close(r.ready)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case <-r.ready:
	case <-r.done:
		t.Fatalf("make run exited (%v) before Ready:\n%s", r.err, r.output())
	case <-time.After(timeout):
		t.Fatalf("make run not ready after %s:\n%s", timeout, r.output())
	}
	var l login
	out := r.output()
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "API key "):
			l.APIKey = strings.TrimSpace(strings.TrimPrefix(line, "API key "))
		case strings.HasPrefix(line, "API "):
			l.API = strings.TrimSpace(strings.TrimPrefix(line, "API "))
		case strings.HasPrefix(line, "Admin "):
			l.Admin = strings.TrimSpace(strings.TrimPrefix(line, "Admin "))
		}
	}
	return l, out
}

func (r *makeRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// stop sends SIGINT to make's process group (a Ctrl-C) and waits for everything to exit.
func (e *env) stop(t *testing.T) {
	t.Helper()
	r := e.run
	if r == nil {
		return
	}
	start := time.Now()
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-r.done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("make run did not stop after SIGINT:\n%s", r.output())
	}
	e.run = nil
	out := r.output()
	if !strings.Contains(out, "Stopped.") {
		t.Fatalf("wrenn up did not stop cleanly (%v):\n%s", r.err, out)
	}
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
}

// environ is the environment of make and the CLI: the test's CLI configuration, and no external
// database (the README's path is the private cluster).
func (e *env) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DATABASE_URL", "WRENN_DATABASE_URL", "WRENN_CONFIG", "WRENN_URL", "WRENN_API_KEY", "WRENN_PROFILE",
			"WRENN_CONTROL_PLANE", "WRENN_REGISTRATION_TOKEN",
			"MAKEFLAGS", "MFLAGS", "MAKELEVEL": // a `make test` around the test is no parent of this make
			continue
		}
		env = append(env, kv)
	}
	return append(env, "WRENN_CONFIG="+e.config)
}

// cli runs bin/wrenn and returns stdout, stderr and the exit code.
func (e *env) cli(t *testing.T, stdin io.Reader, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.wrenn, args...)
	cmd.Env = e.environ()
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	t.Fatalf("wrenn %s: %v", strings.Join(args, " "), err)
	return "", "", 0
}

// ok runs the CLI and fails the test unless it exits 0.
func (e *env) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := e.cli(t, nil, args...)
	if code != 0 {
		t.Fatalf("wrenn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// eventually runs the CLI until it exits 0 (for up to a minute) and returns its output.
func (e *env) eventually(t *testing.T, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, errOut, code := e.cli(t, nil, args...)
		if code == 0 {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("wrenn %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// create starts a capsule and returns its id.
func (e *env) create(t *testing.T, template string) string {
	t.Helper()
	start := time.Now()
	id := strings.TrimSpace(e.ok(t, "capsule", "create", "--template", template))
	if !strings.HasPrefix(id, "cl-") || strings.ContainsAny(id, " \n") {
		t.Fatalf("capsule create printed %q, want a capsule id", id)
	}
	t.Logf("capsule %s from %s in %s", id, template, time.Since(start).Round(time.Millisecond))
	return id
}

// status returns the capsule's status as `wrenn --json capsule get` reports it.
func (e *env) status(t *testing.T, id string) string {
	t.Helper()
	var c struct {
		Status string `json:"status"`
	}
	out := e.ok(t, "--json", "capsule", "get", id)
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("wrenn --json capsule get: %q: %v", out, err)
	}
	return c.Status
}

func (e *env) waitStatus(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := e.status(t, id)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("capsule %s: status %q, want %q", id, got, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkExec: output passes through, the CLI's exit code is the remote one.
func (e *env) checkExec(t *testing.T, id string) {
	t.Helper()
	out, errOut, code := e.cli(t, nil, "capsule", "exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
	if out != "out\n" || !strings.Contains(errOut, "err") || code != 7 {
		t.Fatalf("exec: stdout %q stderr %q exit %d, want out, err, 7", out, errOut, code)
	}
}

// checkShell opens `wrenn capsule shell` on a pseudo-terminal, types a command, reads its output and exits.
func (e *env) checkShell(t *testing.T, id string) {
	t.Helper()
	cmd := exec.Command(e.wrenn, "capsule", "shell", "--cmd", "/bin/sh", id)
	cmd.Env = append(e.environ(), "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			mu.Lock()
			buf.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitOutput := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := buf.String()
			mu.Unlock()
			if strings.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("shell: %q not seen in output %q", want, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The arithmetic keeps the expected text out of the echoed input.
	if _, err := ptmx.WriteString("echo shell-$((40+2))-$(tty | cut -c1-8)\r"); err != nil {
		t.Fatal(err)
	}
	waitOutput("shell-42-/dev/pts")
	if _, err := ptmx.WriteString("exit 3\r"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Fatalf("shell exit: %v, want exit status 3", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("shell did not exit after `exit 3`")
	}
	ptmx.Close()
	<-readDone
}

// checkFiles copies a file into the capsule and back out.
func (e *env) checkFiles(t *testing.T, id string) {
	t.Helper()
	dir := t.TempDir()
	in, back := filepath.Join(dir, "in.bin"), filepath.Join(dir, "back.bin")
	data := make([]byte, 300<<10)
	_, _ = rand.Read(data)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok(t, "files", "cp", in, id+":/tmp/in.bin")
	if out := e.ok(t, "capsule", "exec", id, "--", "sh", "-c", "wc -c < /tmp/in.bin"); strings.TrimSpace(out) != strconv.Itoa(len(data)) {
		t.Fatalf("size in the capsule: %q, want %d", out, len(data))
	}
	e.ok(t, "files", "cp", id+":/tmp/in.bin", back)
	got, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("file copied out differs: %d bytes, want %d", len(got), len(data))
	}
}

// checkTicking: the background loop started before the restart still runs (its file keeps changing).
// checkProxy starts a web server in capsule id and reaches it through the port proxy that `wrenn up`
// turns on (domain localhost): http://8000-<id>.localhost:<port>/ on the API listener. envd's port
// needs the capsule's access token.
func (e *env) checkProxy(t *testing.T, id string) {
	t.Helper()
	e.ok(t, "capsule", "exec", id, "--", "sh", "-c", "mkdir -p /tmp/www && echo through-the-proxy > /tmp/www/index.html")
	e.ok(t, "capsule", "exec", "--background", "--tag", "www", id, "--", "httpd", "-f", "-p", "8000", "-h", "/tmp/www")
	_, port, _ := net.SplitHostPort(e.listen)
	get := func(capsulePort string) (int, string, error) {
		req, err := http.NewRequest("GET", "http://"+e.listen+"/", nil)
		if err != nil {
			return 0, "", err
		}
		req.Host = capsulePort + "-" + id + ".localhost:" + port
		res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, string(b), err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body, err := get("8000")
		if err == nil && code == 200 && body == "through-the-proxy\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web server through the port proxy: %d %q %v", code, body, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code, body, err := get("49983"); err != nil || code != 401 {
		t.Fatalf("envd through the proxy without its token: %d %q %v", code, body, err)
	}
}

func (e *env) checkTicking(t *testing.T, id string) {
	t.Helper()
	read := func() int {
		out := e.ok(t, "capsule", "exec", id, "--", "cat", "/tmp/tick")
		n, err := strconv.Atoi(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("/tmp/tick: %q", out)
		}
		return n
	}
	first := read()
	deadline := time.Now().Add(60 * time.Second)
	for read() <= first {
		if time.Now().After(deadline) {
			t.Fatalf("the background process of %s did not survive the restart (/tmp/tick stays %d)", id, first)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// leftovers lists processes of this platform: anything whose command line names the data directory
// (wrenn up, the agent, runsc, the postmaster) or the API address (the control plane).
func (e *env) leftovers() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, e.dataDir) || strings.Contains(cmd, e.listen) {
			out = append(out, ent.Name()+": "+cmd)
		}
	}
	return out
}

func (e *env) assertNoProcesses(t *testing.T) {
	t.Helper()
	if procs := e.leftovers(); len(procs) > 0 {
		t.Fatalf("processes left after wrenn up stopped:\n%s", strings.Join(procs, "\n"))
	}
	if _, err := os.Stat(filepath.Join(e.dataDir, "postgres", "data", "postmaster.pid")); err == nil {
		t.Fatal("PostgreSQL still running (postmaster.pid exists)")
	}
}

// assertClean fails when anything of the agent's is left: namespaces, links, nftables tables, mounts.
func (e *env) assertClean(t *testing.T) {
	t.Helper()
	for _, what := range e.machineLeftovers() {
		t.Error(what)
	}
}

func (e *env) machineLeftovers() []string {
	var left []string
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), e.prefix) {
		left = append(left, "network namespaces left:\n"+string(out))
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(out), e.prefix) {
		left = append(left, "links left:\n"+string(out))
	}
	if out, _ := exec.Command("nft", "list", "tables").Output(); strings.Contains(string(out), e.prefix) {
		left = append(left, "nftables tables left:\n"+string(out))
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), e.dataDir) {
		left = append(left, "mounts left under "+e.dataDir)
	}
	return left
}

// cleanup stops a run the test left (a failure), destroys whatever capsules and network state remain
// with a standalone agent on the same data directory, and removes the data directory.
func (e *env) cleanup() {
	t := e.t
	if r := e.run; r != nil {
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-r.done:
		case <-time.After(5 * time.Minute):
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
		}
		if t.Failed() {
			t.Logf("make run output:\n%s", r.output())
		}
	}
	if t.Failed() {
		for _, name := range []string{"wrenn-agent.log", "wrenn-cp.log"} {
			if b, err := os.ReadFile(filepath.Join(e.dataDir, "logs", name)); err == nil {
				if len(b) > 16<<10 {
					b = b[len(b)-16<<10:]
				}
				t.Logf("%s:\n%s", name, b)
			}
		}
	}
	if len(e.leftovers()) > 0 || len(e.machineLeftovers()) > 0 {
		e.terminate()
	}
	if pidFile, err := os.ReadFile(filepath.Join(e.dataDir, "postgres", "data", "postmaster.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.SplitN(string(pidFile), "\n", 2)[0]); err == nil {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			time.Sleep(time.Second)
		}
	}
	for _, p := range e.leftovers() {
		pid, _ := strconv.Atoi(strings.SplitN(p, ":", 2)[0])
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := os.RemoveAll(e.dataDir); err != nil {
		t.Errorf("remove data directory: %v", err)
	}
}

// terminate runs the agent standalone on the data directory and asks it to destroy everything.
func (e *env) terminate() {
	t := e.t
	t.Logf("cleaning up with a standalone agent: processes %v, machine %v", e.leftovers(), e.machineLeftovers())
	for _, p := range e.leftovers() { // a stuck agent or control plane of the run
		if strings.Contains(p, "wrenn-agent") || strings.Contains(p, "wrenn-cp") {
			pid, _ := strconv.Atoi(strings.SplitN(p, ":", 2)[0])
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	var st struct {
		Subnet string `json:"subnet"`
	}
	b, _ := os.ReadFile(filepath.Join(e.dataDir, "up.json"))
	_ = json.Unmarshal(b, &st)
	if st.Subnet == "" {
		st.Subnet = e.subnet
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	bin := filepath.Join(e.root, "bin")
	cmd := exec.Command(filepath.Join(bin, "wrenn-agent"), "-listen", addr, "-data-dir", e.dataDir,
		"-runsc", testutil.Runsc(t), "-envd", filepath.Join(bin, "envd"), "-net-prefix", e.prefix, "-subnet", st.Subnet)
	cmd.Env = e.environ()
	logf, err := os.Create(filepath.Join(t.TempDir(), "cleanup-agent.log"))
	if err != nil {
		t.Error(err)
		return
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Errorf("cleanup agent: %v", err)
		return
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	client := hostagentv1connect.NewHostAgentServiceClient(http.DefaultClient, "http://"+addr)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := client.Terminate(ctx, connect.NewRequest(&hav1.TerminateRequest{}))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("cleanup agent Terminate: %v", err)
			_ = cmd.Process.Kill()
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
