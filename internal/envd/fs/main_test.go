package fs

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/api/envd/filesystem/filesystemconnect"
	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// Fixture users: alice exists only in the fixture user database, so tests
// need no real accounts; chown to her ids works as root all the same.
const (
	aliceUID = 4242
	aliceGID = 4343
)

var aliceHome string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fs-test-users-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aliceHome = filepath.Join(dir, "home", "alice")
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nalice:x:%d:%d::%s:/bin/sh\n", aliceUID, aliceGID, aliceHome)
	group := fmt.Sprintf("root:x:0:\nalicegrp:x:%d:\n", aliceGID)
	osuser.PasswdFile = filepath.Join(dir, "passwd")
	osuser.GroupFile = filepath.Join(dir, "group")
	err = os.WriteFile(osuser.PasswdFile, []byte(passwd), 0o644)
	if err == nil {
		err = os.WriteFile(osuser.GroupFile, []byte(group), 0o644)
	}
	if err == nil {
		err = os.MkdirAll(aliceHome, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: chown, mounts and chattr")
	}
}

type env struct {
	svc    *Service
	client filesystemconnect.FilesystemClient
	store  *defaults.Store
}

// newEnv serves a fresh Service over loopback HTTP; json selects the
// client's codec.
func newEnv(t *testing.T, json bool) *env {
	t.Helper()
	requireRoot(t)
	store := defaults.New(nil)
	svc := New(slog.New(slog.NewTextHandler(io.Discard, nil)), store)
	mux := http.NewServeMux()
	mux.Handle(filesystemconnect.NewFilesystemHandler(svc))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.Start()
	t.Cleanup(func() {
		svc.Close()
		srv.Close()
	})
	var opts []connect.ClientOption
	if json {
		opts = append(opts, connect.WithProtoJSON())
	}
	return &env{svc: svc, store: store, client: filesystemconnect.NewFilesystemClient(srv.Client(), srv.URL, opts...)}
}

// as returns req with the Basic authorization header selecting user.
func as[T any](user string, req *connect.Request[T]) *connect.Request[T] {
	req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":")))
	return req
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %v", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("got %v (%v), want %v", got, err, code)
	}
}

// mountTmpfs mounts a tmpfs on a new directory with the given options and
// unmounts it when the test ends.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// immutable sets chattr +i on path until the test ends.
func immutable(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", path).Run() })
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T) context.Context { return t.Context() }

// forCodecs runs fn against a fresh service once with the binary and once
// with the JSON codec.
func forCodecs(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, json := range []bool{false, true} {
		name := "proto"
		if json {
			name = "json"
		}
		t.Run(name, func(t *testing.T) { fn(t, newEnv(t, json)) })
	}
}
