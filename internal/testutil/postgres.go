package testutil

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wrenn/wrenn/internal/cli/pgcluster"
)

// DatabaseURLEnv names the environment variable that points the tests at an
// existing PostgreSQL server (a superuser DSN) instead of a private cluster.
const DatabaseURLEnv = "DATABASE_URL"

// pg is the test process's private PostgreSQL cluster, started by the first
// Postgres call and stopped by Main.
var pg struct {
	mu      sync.Mutex
	cluster *pgcluster.Cluster
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
		if errors.Is(err, pgcluster.ErrNotInstalled) {
			SkipUnlessCI(t, "%v", err)
		}
		if err != nil {
			t.Fatalf("start PostgreSQL: %v", err)
		}
		admin = c.DSN("postgres")
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

func sharedCluster() (*pgcluster.Cluster, error) {
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
		pg.cluster.StopChild(30 * time.Second)
		_ = os.RemoveAll(pg.cluster.Dir)
		pg.cluster = nil
	}
}

// startCluster creates a throwaway cluster in a temporary directory and runs it as a child of the
// test process.
func startCluster() (*pgcluster.Cluster, error) {
	dir, err := os.MkdirTemp("", "wrenn-pg-")
	if err != nil {
		return nil, err
	}
	c, err := pgcluster.New(pgcluster.Config{
		Dir: dir, LogPath: filepath.Join(dir, "postgres.log"), Throwaway: true,
		Settings: []string{"max_connections=300", "shared_buffers=64MB"},
	})
	if err == nil {
		err = c.Init(context.Background())
	}
	// A port picked free may be taken before postgres binds it: retry.
	for attempt := 0; err == nil; attempt++ {
		c.Port = 0
		if err = c.StartChild(60 * time.Second); err == nil || attempt == 2 {
			break
		}
		err = nil
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}
