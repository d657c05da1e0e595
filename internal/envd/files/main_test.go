package files

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"syscall"
	"testing"

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
	osusertest.Main(m, "files-test", func() { aliceHome = osusertest.AliceHome })
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	testutil.RequireRoot(tb)
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
