package up

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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// databaseName is the database of the private cluster that holds Wrenn's schema.
const databaseName = "wrenn"

// cluster is the private PostgreSQL cluster under <data-dir>/postgres: run by the postgres OS user
// (PostgreSQL refuses root), listening on 127.0.0.1 only (no Unix socket), password-authenticated.
type cluster struct {
	dir      string // <data-dir>/postgres, owned by the postgres user
	data     string // dir/data
	bindir   string
	logPath  string
	port     int
	password string
	cred     *syscall.Credential
}

// newCluster prepares the cluster's directories; port and password come from the state (picked on
// the first run).
func newCluster(dataDir, logPath string, st *state) (*cluster, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the private PostgreSQL cluster runs as the postgres OS user (package postgresql), or pass --database-url: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	c := &cluster{
		dir:      filepath.Join(dataDir, "postgres"),
		logPath:  logPath,
		port:     st.PostgresPort,
		password: st.PostgresPassword,
		cred:     &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
	}
	c.data = filepath.Join(c.dir, "data")
	// The postgres user must reach its directory and its log: traverse rights on the data directory
	// and the log directory through its group, nothing more.
	for _, d := range []string{dataDir, filepath.Dir(logPath)} {
		if err := grantTraverse(d, gid); err != nil {
			return nil, err
		}
	}
	if err := checkTraversable(filepath.Dir(dataDir), uid, gid); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(c.dir, uid, gid); err != nil {
		return nil, err
	}
	// pg_ctl writes the server log as the postgres user.
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	if err := os.Chown(logPath, uid, gid); err != nil {
		return nil, err
	}
	if c.bindir, err = pgBinDir(c.data); err != nil {
		return nil, err
	}
	return c, nil
}

// DSN is the connection string of Wrenn's database on the cluster.
func (c *cluster) DSN() string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword("postgres", c.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + databaseName,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// initialized reports whether initdb has run.
func (c *cluster) initialized() bool {
	_, err := os.Stat(filepath.Join(c.data, "PG_VERSION"))
	return err == nil
}

// init creates the cluster (first run): initdb with a generated superuser password.
func (c *cluster) init(ctx context.Context) error {
	if err := os.RemoveAll(c.data); err != nil { // a half-done initdb
		return err
	}
	pwfile := filepath.Join(c.dir, ".pwfile")
	if err := os.WriteFile(pwfile, []byte(c.password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := os.Chown(pwfile, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
		return err
	}
	out, err := c.command(ctx, "initdb", "-D", c.data, "-U", "postgres", "--pwfile", pwfile,
		"-A", "scram-sha-256", "-E", "UTF8", "--locale=C").CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// running reports whether the cluster's server runs (left running by a `wrenn up` that was killed).
func (c *cluster) running(ctx context.Context) bool {
	return c.command(ctx, "pg_ctl", "status", "-D", c.data).Run() == nil
}

// start starts the server on 127.0.0.1:port and waits until it accepts connections.
func (c *cluster) start(ctx context.Context) error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=''", c.port)
	out, err := c.command(ctx, "pg_ctl", "start", "-D", c.data, "-l", c.logPath, "-w", "-t", "120", "-o", opts).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\nend of %s:\n%s", err, out, c.logPath, logTail(c.logPath, 20))
	}
	return nil
}

// stop shuts the server down (fast: sessions are disconnected, data is flushed) and returns once the
// postmaster has exited: pg_ctl returns when the pid file is gone, a moment before the process is.
func (c *cluster) stop() error {
	pid := c.postmasterPID()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := c.command(ctx, "pg_ctl", "stop", "-D", c.data, "-m", "fast", "-w", "-t", "60").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	if pid > 0 {
		if left := waitGone([]int{pid}, exitWait); len(left) > 0 {
			return fmt.Errorf("the postmaster (pid %d) is still running %s after pg_ctl stop", pid, exitWait)
		}
	}
	return nil
}

// postmasterPID returns the pid in the cluster's postmaster.pid, 0 when there is none.
func (c *cluster) postmasterPID() int {
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

// ensureDatabase creates Wrenn's database unless it exists.
func (c *cluster) ensureDatabase(ctx context.Context) error {
	u, _ := url.Parse(c.DSN())
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", databaseName).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+databaseName)
	return err
}

// command runs a PostgreSQL program as the postgres user, in its own process group (a Ctrl-C on the
// terminal must not reach the server: `wrenn up` stops it last).
func (c *cluster) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bindir, prog), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + c.dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	return cmd
}

// freeLoopbackPort returns a TCP port free on 127.0.0.1 now.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pgBinDir finds the PostgreSQL server programs: those of the cluster's major version when it exists,
// else pg_config's bindir, the newest /usr/lib/postgresql/*/bin, or initdb's directory in PATH.
func pgBinDir(data string) (string, error) {
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
	return "", errors.New("PostgreSQL server programs (initdb, pg_ctl, postgres) not found: install package postgresql, or pass --database-url")
}

// grantTraverse lets group gid traverse dir (group set to gid, mode g+x) unless others may already.
func grantTraverse(dir string, gid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode().Perm()
	if mode&0o001 != 0 || (int(st.Gid) == gid && mode&0o010 != 0) {
		return nil
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode|0o010)
}

// checkTraversable fails when the user uid/gid cannot traverse dir and its parents.
func checkTraversable(dir string, uid, gid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		ok := mode&0o001 != 0 || (int(st.Uid) == uid && mode&0o100 != 0) || (int(st.Gid) == gid && mode&0o010 != 0)
		if !ok {
			return fmt.Errorf("the postgres OS user cannot enter %s (mode %v), so it cannot reach the private cluster under the data directory: choose another --data-dir, allow it (chmod o+x %s), or pass --database-url", d, mode, d)
		}
		if d == "/" {
			return nil
		}
	}
}
