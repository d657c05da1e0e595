package main

import (
	"os/exec"
	"strings"
	"testing"
)

// envd runs inside every capsule: it may depend only on its own packages and
// the envd contracts, never on host-agent or control-plane code.
func TestEnvdDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{
		"github.com/wrenn/wrenn/cmd/envd",
		"github.com/wrenn/wrenn/api/envd/",
		"github.com/wrenn/wrenn/internal/envd/",
	}
	for _, pkg := range strings.Fields(string(out)) {
		if !strings.HasPrefix(pkg, "github.com/wrenn/wrenn/") {
			continue
		}
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("envd imports %s; it may import only api/envd/... and internal/envd/...", pkg)
		}
	}
}
