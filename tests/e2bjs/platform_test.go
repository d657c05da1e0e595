package e2bjs_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// TestE2BJSPlatform runs the unmodified E2B JS SDK, 2.51.0 (platform.test.mjs) and 2.50.0
// (v250/v250.test.mjs), against the full stack: a control plane with its port proxy on localhost and a
// real agent with the Debian base template, reached with E2B_API_URL and E2B_SANDBOX_URL (docs/e2b.md).
func TestE2BJSPlatform(t *testing.T) {
	testutil.Integration(t)
	if os.Getenv("WRENN_TEST_DEBOOTSTRAP") != "1" {
		testutil.SkipUnlessCI(t, "set WRENN_TEST_DEBOOTSTRAP=1: the SDK runs in the Debian base template")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		testutil.SkipUnlessCI(t, "node is not installed: %v", err)
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	npmCI(t, dir)
	npmCI(t, filepath.Join(dir, "v250"))

	p := platform.New(t, 1, "--proxy-domain", "localhost")
	p.AddHost(t, false)
	base := p.URL()
	key := cptest.Key(p.Key)
	// Whatever the SDK runs leave behind (a failed run) is destroyed.
	t.Cleanup(func() {
		res := cptest.Call(t, base, "GET", "/v1/capsules", key, nil)
		var cs []struct{ ID string }
		_ = json.Unmarshal(res.Body, &cs)
		for _, c := range cs {
			if res := cptest.Call(t, base, "DELETE", "/v1/capsules/"+c.ID, key, nil); res.Status != 204 {
				t.Errorf("destroy leftover capsule %s: %d %s", c.ID, res.Status, res.Body)
			}
		}
	})

	// The first capsule from base builds the Debian image on the agent (minutes, longer than the SDK's
	// 60 s request timeout): one made and destroyed through /v1 first.
	res := cptest.Call(t, base, "POST", "/v1/capsules", key, map[string]any{"template": "base"})
	if res.Status != 201 {
		t.Fatalf("warm-up capsule from base: %d %s", res.Status, res.Body)
	}
	var warm struct{ ID string }
	res.JSON(t, &warm)
	if res := cptest.Call(t, base, "DELETE", "/v1/capsules/"+warm.ID, key, nil); res.Status != 204 {
		t.Fatalf("destroy warm-up capsule: %d %s", res.Status, res.Body)
	}

	env := append(os.Environ(),
		"E2B_API_URL="+base,
		"E2B_SANDBOX_URL="+base,
		"E2B_API_KEY="+p.Key,
		"WRENN_RUN="+testutil.RandomName("run", 6),
		"NO_COLOR=1",
	)
	runNode(t, node, dir, "platform.test.mjs", env)
	runNode(t, node, filepath.Join(dir, "v250"), "v250.test.mjs", env)
	if os.Getenv("WRENN_E2B_BENCH") == "1" {
		runScript(t, node, dir, "bench.mjs", env)
	}
}

// runScript runs `node file` in dir and logs its output.
func runScript(t *testing.T, node, dir, file string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, file)
	cmd.Dir, cmd.Env, cmd.WaitDelay = dir, env, 5*time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("node %s:\n%s", file, out)
	if err != nil {
		t.Fatalf("node %s: %v", file, err)
	}
}

// npmCI installs dir's locked packages when they are missing.
func npmCI(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b")); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		testutil.SkipUnlessCI(t, "npm is not installed: %v", err)
	}
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
}

// runNode runs `node --test file` in dir and logs its output line by line.
func runNode(t *testing.T, node, dir, file string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "--test-concurrency=1", file)
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	logLines(t, stdout)
	if err := cmd.Wait(); err != nil {
		// The next file still runs: the suites are independent.
		t.Errorf("node --test %s: %v", file, err)
	}
}
