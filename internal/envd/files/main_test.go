package files

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// alice exists only in the fixture user database; chown to her ids works
// as root all the same.
const (
	aliceUID = 4242
	aliceGID = 4343
)

var aliceHome string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "files-test-users-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	aliceHome = filepath.Join(dir, "home", "alice")
	osuser.PasswdFile = filepath.Join(dir, "passwd")
	osuser.GroupFile = filepath.Join(dir, "group")
	err = os.WriteFile(osuser.PasswdFile, fmt.Appendf(nil, "root:x:0:0:root:/root:/bin/sh\nalice:x:%d:%d::%s:/bin/sh\n", aliceUID, aliceGID, aliceHome), 0o644)
	if err == nil {
		err = os.WriteFile(osuser.GroupFile, fmt.Appendf(nil, "root:x:0:\nalicegrp:x:%d:\n", aliceGID), 0o644)
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

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: chown, mounts")
	}
}

type env struct {
	url    string
	client *http.Client
	store  *defaults.Store
}

// newEnv serves the handler on loopback. The client does not add
// Accept-Encoding by itself, so tests see exactly what the server sends.
func newEnv(tb testing.TB) *env {
	tb.Helper()
	requireRoot(tb)
	store := defaults.New(nil)
	srv := httptest.NewServer(New(slog.New(slog.NewTextHandler(io.Discard, nil)), store))
	tr := &http.Transport{DisableCompression: true}
	tb.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
	})
	return &env{url: srv.URL, client: &http.Client{Transport: tr}, store: store}
}

func (e *env) setToken(tb testing.TB, token string) {
	tb.Helper()
	if _, err := e.store.Apply(defaults.Update{AccessToken: &token}, nil); err != nil {
		tb.Fatal(err)
	}
}

// filesURL builds /files?k=v… from alternating keys and values.
func (e *env) filesURL(kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return e.url + "/files?" + q.Encode()
}

func (e *env) do(tb testing.TB, req *http.Request) (*http.Response, []byte) {
	tb.Helper()
	res, err := e.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return res, b
}

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

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func owner(t *testing.T, path string) (uid, gid uint32, perm os.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, info.Mode().Perm()
}
