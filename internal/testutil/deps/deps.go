// Package deps checks which of the module's packages a binary depends on: the import fences of
// ARCHITECTURE.md, tested by the deps_test.go beside each main.
package deps

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// Module is the module path every pattern is relative to.
const Module = "github.com/wrenn/wrenn"

// List returns the import paths of the package in dir and of everything it imports, directly or not
// (`go list -deps`; test files are not part of it).
func List(t testing.TB, dir string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	return strings.Fields(string(out))
}

// Outside returns the packages of pkgs that belong to Module and match none of allowed. A pattern is
// a path relative to Module; one ending in "/..." matches that package and every package below it,
// another only that package. Packages of other modules and the standard library are not checked.
func Outside(pkgs []string, allowed ...string) []string {
	var out []string
	for _, pkg := range pkgs {
		rel, ok := strings.CutPrefix(pkg, Module+"/")
		if !ok {
			continue
		}
		if !matchAny(rel, allowed) {
			out = append(out, pkg)
		}
	}
	return out
}

func matchAny(rel string, patterns []string) bool {
	for _, p := range patterns {
		if base, ok := strings.CutSuffix(p, "/..."); ok {
			if rel == base || strings.HasPrefix(rel, base+"/") {
				return true
			}
		} else if rel == p {
			return true
		}
	}
	return false
}
