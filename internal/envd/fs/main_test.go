package fs

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem/filesystemconnect"
	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/osuser/osusertest"
	"github.com/wrenn/wrenn/internal/testutil"
)

const (
	aliceUID = osusertest.AliceUID
	aliceGID = osusertest.AliceGID
)

var aliceHome string

func TestMain(m *testing.M) {
	osusertest.Main(m, "fs-test", func() { aliceHome = osusertest.AliceHome })
}

func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
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
