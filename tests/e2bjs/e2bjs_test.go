// Package e2bjs_test runs the unmodified E2B JS SDK (e2b 2.51.0, debug mode)
// against the real envd binary: conformance items 1–27 of the protocol spec.
package e2bjs_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// envdAddr is fixed: the SDK's debug mode hard-codes localhost:49983.
const envdAddr = "127.0.0.1:49983"

func TestE2BJSSDK(t *testing.T) {
	testutil.Integration(t)
	node, err := exec.LookPath("node")
	if err != nil {
		testutil.SkipUnlessCI(t, "node is not installed: %v", err)
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			testutil.SkipUnlessCI(t, "npm is not installed: %v", err)
		}
		cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}

	u := testutil.CreateUser(t, testutil.RandomName("wrnt", 8))
	scratch := t.TempDir()
	e := testutil.StartEnvdWith(t, testutil.EnvdOptions{Args: []string{"-addr", envdAddr}, NoHostProfile: true})

	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "envd.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"E2B_DEBUG=true",
		"WRENN_TEST_USER="+u.Name,
		"WRENN_TEST_DIR="+scratch,
		"ENVD_PID="+strconv.Itoa(e.PID),
		"NO_COLOR=1",
	)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		logLines(t, stdout)
	}()
	wg.Wait()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node --test envd.test.mjs: %v", err)
	}
	if !e.Alive() {
		t.Fatal("envd exited during the SDK run")
	}
}

func logLines(t *testing.T, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t.Log(sc.Text())
	}
}
