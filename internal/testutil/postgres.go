package testutil

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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DatabaseURLEnv names the environment variable that points the tests at an
// existing PostgreSQL server (a superuser DSN) instead of a private cluster.
const DatabaseURLEnv = "DATABASE_URL"

// errNoPostgres marks a machine without PostgreSQL server binaries.
var errNoPostgres = errors.New("PostgreSQL server binaries (initdb, postgres) not found")

// pg is the test process's private PostgreSQL cluster, started by the first
// Postgres call and stopped by Main.
var pg struct {
	mu      sync.Mutex
	cluster *pgCluster
	err     error // a failed start, returned to every later caller
}

// mainActive is set while Main runs the tests, so Postgres knows a private
// cluster will be stopped again.
var mainActive bool

// Postgres returns the DSN of a new, empty database that is dropped when the
// test ends. With $DATABASE_URL set, the database is created on that server;
// otherwise on a private cluster that the test process starts once (initdb +
// postgres, as the postgres OS user when running as root, on a free loopback
// port) and that Main stops and removes. Without PostgreSQL the test is
// skipped (failed under CI=true). Packages calling it must use Main in TestMain.
func Postgres(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(DatabaseURLEnv)
	if admin == "" {
		if !mainActive {
			t.Fatal("testutil.Postgres needs testutil.Main in the package's TestMain (it stops the cluster)")
		}
		c, err := sharedCluster()
		if errors.Is(err, errNoPostgres) {
			SkipUnlessCI(t, "%v", err)
		}
		if err != nil {
			t.Fatalf("start PostgreSQL: %v", err)
		}
		admin = c.adminDSN
	}
	name := RandomName("wrenn_test_", 16)
	dsn, err := withDatabase(admin, name)
	if err != nil {
		t.Fatalf("%s: %v", DatabaseURLEnv, err)
	}
	if err := adminExec(admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if err := adminExec(admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return dsn
}

// adminExec runs one statement on the admin connection.
func adminExec(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns dsn (URL or key=value form) pointing at database name.
func withDatabase(dsn, name string) (string, error) {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return "", err
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In key=value form a later key wins.
	return dsn + " dbname=" + name, nil
}

func sharedCluster() (*pgCluster, error) {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.cluster == nil && pg.err == nil {
		pg.cluster, pg.err = startCluster()
	}
	return pg.cluster, pg.err
}

// stopPostgres stops the private cluster, if one was started, and removes it.
func stopPostgres() {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.cluster != nil {
		pg.cluster.stop()
		pg.cluster = nil
	}
}

// pgCluster is a postgres server running from a temporary directory.
type pgCluster struct {
	dir      string // data directory, socket directory and log
	adminDSN string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the server has exited
}

// pgBinDir finds the directory holding initdb and postgres: pg_config's
// bindir, the newest /usr/lib/postgresql/*/bin, or the directory of initdb in PATH.
func pgBinDir() (string, error) {
	ok := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
				return false
			}
		}
		return true
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); ok(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
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
	return "", errNoPostgres
}

// pgVersion is the major version in /usr/lib/postgresql/<v>/bin, or 0.
func pgVersion(bindir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(bindir)))
	return v
}

// serverCredential is whom initdb and postgres run as: the postgres OS user
// when the tests run as root (postgres refuses root), else the caller (nil).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root needs the postgres OS user: %v", errNoPostgres, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func startCluster() (*pgCluster, error) {
	bindir, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "wrenn-pg-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bindir, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	// A port picked free may be taken before postgres binds it: retry.
	for attempt := 0; ; attempt++ {
		c, err := startServer(bindir, dir, cred)
		if err == nil {
			return c, nil
		}
		if attempt == 2 {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

func startServer(bindir, dir string, cred *syscall.Credential) (*pgCluster, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()

	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bindir, "postgres"),
		"-D", filepath.Join(dir, "data"),
		"-k", dir, "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		// Test data is thrown away: trade durability for speed.
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=64MB")
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		Setpgid:    true,
		// If the test process dies without Main's cleanup, the server dies too.
		Pdeathsig: syscall.SIGKILL,
	}
	c := &pgCluster{
		dir:      dir,
		adminDSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		cmd:      cmd,
		done:     make(chan struct{}),
	}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits, so
		// this goroutine keeps its thread for as long as the server runs.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	if err := c.waitReady(60 * time.Second); err != nil {
		c.kill()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("%w\npostgres log:\n%s", err, log)
	}
	return c, nil
}

// waitReady waits until the server accepts connections, exits, or timeout passes.
func (c *pgCluster) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited during startup: %v", c.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := pgx.Connect(ctx, c.adminDSN)
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

// stop shuts the server down (fast shutdown, then SIGKILL) and removes its directory.
func (c *pgCluster) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.kill()
	}
	_ = os.RemoveAll(c.dir)
}

// kill ends the server and its backends at once and waits for it.
func (c *pgCluster) kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}
