// Package web_test drives the dashboard in a real browser (Debian's chromium, headless, through
// playwright-core) against the real platform: wrenn-cp built with the dashboard embedded, PostgreSQL
// and a real host agent with gVisor capsules. The dashboard is built first when web/build/app is
// missing (`make test` builds it through `make web`). Screenshots land in tests/web/output (CI
// artifacts, gitignored).
package web_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/fakegithub"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestDashboardInBrowser(t *testing.T) {
	testutil.Integration(t)
	root := moduleRoot(t)
	webDir := filepath.Join(root, "web")
	buildDashboard(t, webDir)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/install-deps.sh (make deps)")
	}
	out := filepath.Join(root, "tests", "web", "output")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	// GitHub sign-in goes to a local fake GitHub. The callback URL must be known before the control
	// planes start, so the browser signs in with GitHub on a second control plane started on that port.
	gh := fakegithub.New(t)
	gh.As(fakegithub.User{ID: 4242, Login: "octo", Name: "Octo Cat", Email: "octo@example.test", Verified: true})
	port := testutil.FreePort(t)
	public := fmt.Sprintf("http://127.0.0.1:%d", port)
	p := platform.New(t, 1, "--proxy-domain", "localhost", "--dashboard-url", public, "--public-url", public,
		"--github-client-id", fakegithub.ClientID, "--github-client-secret", fakegithub.ClientSecret,
		"--github-auth-url", gh.AuthURL(), "--github-token-url", gh.TokenURL(), "--github-api-url", gh.APIURL())
	oauthCP := p.StartCP(port)
	p.AddHost(t, false)
	archive := filepath.Join(t.TempDir(), "hello-site.tar.gz")
	writeTarGz(t, archive, map[string]string{"hello.txt": "hello from the archive\n"})
	// Whatever the browser left (a failed run), the team's capsules are destroyed.
	t.Cleanup(func() { destroyAll(t, p) })

	// The dashboard is served at / and on its routes; the API's paths keep their JSON answers.
	for path, want := range map[string]string{"/": "/_app/", "/dashboard/capsules/cl-x": "/_app/", "/docs": "/_app/", "/openapi.yaml": "openapi: 3", "/v1/nope": `"not_found"`, "/health": `"ok"`} {
		body, err := get(p.URL() + path)
		if err != nil || !strings.Contains(body, want) {
			t.Errorf("GET %s: %v, body lacks %q:\n%.300s", path, err, want, body)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "e2e/dashboard.mjs")
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(),
		"WRENN_URL="+p.URL(), "WRENN_EMAIL=admin@example.test", "WRENN_PASSWORD=admin-password",
		"WRENN_KEY="+p.Key, "WRENN_OUT="+out, "CHROMIUM="+chromium,
		"WRENN_BUILD_ARCHIVE="+archive, "WRENN_OAUTH_URL="+oauthCP.URL)
	output, err := cmd.CombinedOutput()
	t.Logf("browser run:\n%s", output)
	if err != nil {
		t.Fatalf("browser test failed: %v (screenshots in %s)", err, out)
	}
}

// buildDashboard runs the web build when its output is missing, so that the wrenn-cp the platform
// builds embeds the dashboard.
func buildDashboard(t *testing.T, webDir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(webDir, "build", "app", "index.html")); err == nil {
		return
	}
	run := func(args ...string) {
		cmd := exec.Command("npm", args...)
		cmd.Dir = webDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm %v: %v\n%s", args, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(webDir, "node_modules")); err != nil {
		run("ci", "--no-audit", "--no-fund")
	}
	run("run", "build")
}

// writeTarGz writes a .tar.gz of files (name → content) at path.
func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func destroyAll(t *testing.T, p *platform.Platform) {
	res := cptest.Call(t, p.URL(), "GET", "/v1/capsules", cptest.Key(p.Key), nil)
	var caps []struct{ ID string }
	if res.Status != 200 || json.Unmarshal(res.Body, &caps) != nil {
		t.Errorf("list capsules at cleanup: %d %s", res.Status, res.Body)
		return
	}
	for _, c := range caps {
		if r := cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+c.ID, cptest.Key(p.Key), nil); r.Status != 204 {
			t.Errorf("destroy %s: %d %s", c.ID, r.Status, r.Body)
		}
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// get returns the body of a GET whatever its status.
func get(url string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}
