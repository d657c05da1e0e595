package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// TestDashboardCapsuleActions drives web/e2e/actions.mjs: the warm pool of a platform template set on the
// admin templates page, fork from the capsule page and the capsule list, pause and resume, snapshot to a
// template and its deletion, each checked through the API by the script. Screenshots land in
// tests/web/output/actions.
func TestDashboardCapsuleActions(t *testing.T) {
	testutil.Integration(t)
	root := moduleRoot(t)
	webDir := filepath.Join(root, "web")
	buildDashboard(t, webDir)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/install-deps.sh (make deps)")
	}
	out := filepath.Join(root, "tests", "web", "output", "actions")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}

	p := platform.New(t, 1)
	p.AddHost(t, false)
	// Whatever the browser left (a failed run): the team's capsules destroyed, the pool off, the
	// snapshot template deleted.
	t.Cleanup(func() {
		destroyAll(t, p)
		if r := cptest.Call(t, p.URL(), "PUT", "/v1/admin/templates/minimal/pool", cptest.Bearer(p.Admin), map[string]int{"size": 0}); r.Status != 200 {
			t.Errorf("pool off at cleanup: %d %s", r.Status, r.Body)
		}
		if r := cptest.Call(t, p.URL(), "DELETE", "/v1/snapshots/web-snap", cptest.Key(p.Key), nil); r.Status != 204 && r.Status != 404 {
			t.Errorf("delete web-snap at cleanup: %d %s", r.Status, r.Body)
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "e2e/actions.mjs")
	cmd.Dir = webDir
	cmd.Env = append(os.Environ(),
		"WRENN_URL="+p.URL(), "WRENN_EMAIL=admin@example.test", "WRENN_PASSWORD=admin-password",
		"WRENN_KEY="+p.Key, "WRENN_ADMIN_TOKEN="+p.Admin, "WRENN_OUT="+out, "CHROMIUM="+chromium)
	output, err := cmd.CombinedOutput()
	t.Logf("browser run:\n%s", output)
	if err != nil {
		t.Fatalf("browser test failed: %v (screenshots in %s)", err, out)
	}
}
