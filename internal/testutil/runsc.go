package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RunscEnv points tests at a runsc binary instead of the one
// scripts/install-runsc.sh builds or finds in its cache.
const RunscEnv = "WRENN_RUNSC"

var runsc struct {
	sync.Once
	path string
	err  error
}

// Runsc returns $WRENN_RUNSC or the binary scripts/install-runsc.sh
// provides (building it when its cache lacks it). Without runsc the test
// fails: the runtime is what these tests are about.
func Runsc(t testing.TB) string {
	t.Helper()
	runsc.Do(func() {
		if p := os.Getenv(RunscEnv); p != "" {
			runsc.path = p
			return
		}
		root, err := moduleRoot()
		if err != nil {
			runsc.err = err
			return
		}
		script := filepath.Join(root, "scripts", "install-runsc.sh")
		var stderr bytes.Buffer
		cmd := exec.Command(script)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			runsc.err = fmt.Errorf("%s: %w\n%s", script, err, stderr.String())
			return
		}
		runsc.path = strings.TrimSpace(string(out))
	})
	if runsc.err != nil {
		t.Fatalf("runsc: %v", runsc.err)
	}
	return runsc.path
}
