// Package pgcluster runs a private PostgreSQL cluster as the postgres OS user (PostgreSQL refuses
// root), listening on 127.0.0.1 only, without a Unix socket: `wrenn up`'s database and the tests'.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled marks a machine without the PostgreSQL server programs or the postgres OS user.
var ErrNotInstalled = errors.New("PostgreSQL server programs (initdb, pg_ctl, postgres) not found")

// Config describes a cluster.
type Config struct {
	// Dir holds the cluster (data in Dir/data); it is made and given to the server's user.
	Dir string
	// LogPath is the server log.
	LogPath string
	// Port is the TCP port on 127.0.0.1; 0: StartChild picks a free one.
	Port int
	// Password is the superuser's (postgres) password, scram-sha-256; empty: trust authentication.
	Password string
	// Throwaway trades durability for speed (initdb --no-sync, fsync off): for test data.
	Throwaway bool
	// Settings are more server settings, "name=value".
	Settings []string
}

// Cluster is a private PostgreSQL cluster.
type Cluster struct {
	Config
	data   string
	bindir string
	cred   *syscall.Credential // nil: the caller (not root)

	// child is the server StartChild started and done is closed when it has exited.
	child *exec.Cmd
	done  chan struct{}
}

// New prepares the cluster's directory and finds the server programs: those of the cluster's major
// version when it exists, else the newest installed.
func New(cfg Config) (*Cluster, error) {
	c := &Cluster{Config: cfg, data: filepath.Join(cfg.Dir, "data")}
	var err error
	if c.cred, err = ServerCredential(); err != nil {
		return nil, err
	}
	if c.bindir, err = binDir(c.data); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	if c.cred != nil {
		if err := os.Chown(c.Dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ServerCredential is whom the server runs as: the postgres OS user when the caller is root, else the
// caller (nil).
func ServerCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root needs the postgres OS user (package postgresql): %v", ErrNotInstalled, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// DSN is the connection string of database on the cluster.
func (c *Cluster) DSN(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	if c.Password != "" {
		u.User = url.UserPassword("postgres", c.Password)
	}
	return u.String()
}

// Initialized reports whether initdb has run.
func (c *Cluster) Initialized() bool {
	_, err := os.Stat(filepath.Join(c.data, "PG_VERSION"))
	return err == nil
}

// Init creates the cluster: initdb with the superuser's password (or trust without one).
func (c *Cluster) Init(ctx context.Context) error {
	if err := os.RemoveAll(c.data); err != nil { // a half-done initdb
		return err
	}
	args := []string{"-D", c.data, "-U", "postgres", "-E", "UTF8", "--locale=C"}
	if c.Password == "" {
		args = append(args, "-A", "trust")
	} else {
		pwfile := filepath.Join(c.Dir, ".pwfile")
		if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
			return err
		}
		defer os.Remove(pwfile)
		if err := c.own(pwfile); err != nil {
			return err
		}
		args = append(args, "--pwfile", pwfile, "-A", "scram-sha-256")
	}
	if c.Throwaway {
		args = append(args, "--no-sync")
	}
	if out, err := c.command(ctx, "initdb", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// Running reports whether the cluster's server runs (say, left running by a process that was killed).
func (c *Cluster) Running(ctx context.Context) bool {
	return c.command(ctx, "pg_ctl", "status", "-D", c.data).Run() == nil
}

// settings are the server's command-line settings.
func (c *Cluster) settings() []string {
	s := []string{"listen_addresses=127.0.0.1", "port=" + strconv.Itoa(c.Port), "unix_socket_directories="}
	if c.Throwaway {
		s = append(s, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	}
	return append(s, c.Settings...)
}

// Start starts the server with pg_ctl, detached from this process (it outlives it), and waits until
// it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	var opts []string
	for _, s := range c.settings() {
		name, value, _ := strings.Cut(s, "=")
		opts = append(opts, "-c "+name+"='"+value+"'")
	}
	if err := c.touchLog(); err != nil {
		return err
	}
	out, err := c.command(ctx, "pg_ctl", "start", "-D", c.data, "-l", c.LogPath, "-w", "-t", "120", "-o", strings.Join(opts, " ")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\nend of %s:\n%s", err, out, c.LogPath, logTail(c.LogPath, 20))
	}
	return nil
}

// Stop shuts a server started by Start (or found running) down, fast: sessions are disconnected, data
// is flushed. pg_ctl returns when the pid file is gone, a moment before the postmaster has exited:
// callers that must outlive it wait for PostmasterPID, read before.
func (c *Cluster) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := c.command(ctx, "pg_ctl", "stop", "-D", c.data, "-m", "fast", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// StartChild runs the server as a child that dies with this process, and waits until it accepts
// connections or timeout passed. StopChild ends it.
func (c *Cluster) StartChild(timeout time.Duration) error {
	if c.Port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		c.Port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	logf, err := os.OpenFile(c.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"-D", c.data}
	for _, s := range c.settings() {
		args = append(args, "-c", s)
	}
	cmd := exec.Command(filepath.Join(c.bindir, "postgres"), args...)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.cred,
		Setpgid:    true,
		// If this process dies without stopping the server, the server dies too.
		Pdeathsig: syscall.SIGKILL,
	}
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits, so this goroutine keeps its
		// thread for as long as the server runs.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.child, c.done = cmd, done
	if err := c.waitReady(timeout); err != nil {
		c.killChild()
		return fmt.Errorf("%w\npostgres log:\n%s", err, logTail(c.LogPath, 50))
	}
	return nil
}

// StopChild shuts the server StartChild started down (fast shutdown, then SIGKILL after wait) and
// waits for it.
func (c *Cluster) StopChild(wait time.Duration) {
	if c.child == nil {
		return
	}
	_ = c.child.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(wait):
		c.killChild()
	}
	c.child = nil
}

// killChild ends the child server and its backends at once and waits for it.
func (c *Cluster) killChild() {
	_ = syscall.Kill(-c.child.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// waitReady waits until the child server accepts connections, exits, or timeout passes.
func (c *Cluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited during startup: %v", c.child.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err == nil {
			err = conn.Ping(ctx)
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %s: %w", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// EnsureDatabase creates database unless it exists.
func (c *Cluster) EnsureDatabase(ctx context.Context, database string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{database}.Sanitize())
	return err
}

// PostmasterPID returns the pid in the cluster's postmaster.pid, 0 when there is none.
func (c *Cluster) PostmasterPID() int {
	b, err := os.ReadFile(filepath.Join(c.data, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return 0
	}
	return pid
}

// command runs a PostgreSQL program as the server's user, in its own process group (a Ctrl-C on the
// terminal must not reach the server).
func (c *Cluster) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bindir, prog), args...)
	cmd.Dir = c.Dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + c.Dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	return cmd
}

// own gives path to the server's user.
func (c *Cluster) own(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// touchLog creates the server log, writable by the server's user (pg_ctl writes it as that user).
func (c *Cluster) touchLog() error {
	f, err := os.OpenFile(c.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	return c.own(c.LogPath)
}

// binDir finds the PostgreSQL server programs: those of the cluster's major version when it exists,
// else pg_config's bindir, the newest /usr/lib/postgresql/*/bin, or initdb's directory in PATH.
func binDir(data string) (string, error) {
	ok := func(dir string) bool {
		for _, b := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if v, err := os.ReadFile(filepath.Join(data, "PG_VERSION")); err == nil {
		dir := filepath.Join("/usr/lib/postgresql", strings.TrimSpace(string(v)), "bin")
		if ok(dir) {
			return dir, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); ok(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(bindir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
		return v
	}
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		if ok(dir) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && ok(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	return "", ErrNotInstalled
}

// logTail returns the last n lines of a log file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
