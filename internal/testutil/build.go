package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// builds caches one binary per package path for the life of the test process.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]buildResult
}

type buildResult struct {
	path string
	err  error
}

// BuildBinary builds the main package pkg (an import path such as
// "github.com/wrenn/wrenn/cmd/envd" or a module-relative "./cmd/envd") once
// per test process, statically (CGO_ENABLED=0), and returns the binary path.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if r, ok := builds.bins[pkg]; ok {
		if r.err != nil {
			t.Fatalf("build %s: %v", pkg, r.err)
		}
		return r.path
	}
	r := build(pkg)
	if builds.bins == nil {
		builds.bins = map[string]buildResult{}
	}
	builds.bins[pkg] = r
	if r.err != nil {
		t.Fatalf("build %s: %v", pkg, r.err)
	}
	return r.path
}

func build(pkg string) buildResult {
	root, err := moduleRoot()
	if err != nil {
		return buildResult{err: err}
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "wrenn-testbin-")
		if err != nil {
			return buildResult{err: err}
		}
		builds.dir = dir
	}
	out := filepath.Join(builds.dir, fmt.Sprintf("%s-%d", path.Base(pkg), len(builds.bins)))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return buildResult{err: fmt.Errorf("go build: %w\n%s", err, stderr.String())}
	}
	return buildResult{path: out}
}

// moduleRoot finds the directory of the main module's go.mod, so packages
// given as "./cmd/envd" build the same from any test directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// ModuleRoot returns the directory of the main module.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func removeBuilds() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
		builds.dir = ""
		builds.bins = nil
	}
}
