package pgcluster_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wrenn/wrenn/internal/cli/pgcluster"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// TestDetached checks `wrenn up`'s way: a password-authenticated cluster started with pg_ctl,
// reachable over TCP on 127.0.0.1 only (no Unix socket), found running again, and stopped.
func TestDetached(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL: skipped with -short")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "wrenn-pgcluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // the postgres OS user enters it
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	c, err := pgcluster.New(pgcluster.Config{
		Dir: filepath.Join(dir, "postgres"), LogPath: filepath.Join(dir, "postgres.log"), Port: port, Password: "s3cret",
	})
	if errors.Is(err, pgcluster.ErrNotInstalled) {
		testutil.SkipUnlessCI(t, "%v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if c.Initialized() {
		t.Fatal("a new cluster reports it is initialized")
	}
	if err := c.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if !c.Initialized() || c.Running(ctx) {
		t.Fatalf("after init: initialized %v, running %v", c.Initialized(), c.Running(ctx))
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if !c.Running(ctx) {
		t.Fatal("not running after Start")
	}
	if err := c.EnsureDatabase(ctx, "wrenn"); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureDatabase(ctx, "wrenn"); err != nil {
		t.Fatalf("second EnsureDatabase: %v", err)
	}
	conn, err := pgx.Connect(ctx, c.DSN("wrenn"))
	if err != nil {
		t.Fatal(err)
	}
	var socketDirs string
	err = conn.QueryRow(ctx, "SHOW unix_socket_directories").Scan(&socketDirs)
	_ = conn.Close(ctx)
	if err != nil || socketDirs != "" {
		t.Errorf("unix_socket_directories = %q, %v; want none", socketDirs, err)
	}
	wrong := strings.Replace(c.DSN("wrenn"), "s3cret", "wrong", 1)
	if conn, err := pgx.Connect(ctx, wrong); err == nil {
		_ = conn.Close(ctx)
		t.Error("a wrong password is accepted")
	}
	pid := c.PostmasterPID()
	if pid <= 0 {
		t.Fatalf("postmaster pid %d", pid)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if c.Running(ctx) {
		t.Error("still running after Stop")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil || strings.Contains(string(b), ") Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d still running after Stop", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
