package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/testutil/deps"
)

// allowed is the import fence of envd (ARCHITECTURE.md, "Where code goes").
//
// envd runs inside every capsule: it may depend only on its own packages and the envd contracts,
// never on host-agent or control-plane code.
var allowed = []string{"cmd/envd", "api/envd/...", "internal/envd/..."}

func TestEnvdDependencies(t *testing.T) {
	for _, pkg := range deps.Outside(deps.List(t, "."), allowed...) {
		t.Errorf("envd imports %s; it may import only %s", pkg, strings.Join(allowed, ", "))
	}
}

// TestFenceReports feeds the fence a dependency list with forbidden packages: it must name them.
func TestFenceReports(t *testing.T) {
	forbidden := []string{deps.Module + "/internal/hostagent/envdclient", deps.Module + "/api/hostagent/hostagent/v1", deps.Module + "/internal/apierr"}
	pkgs := append([]string{"fmt", deps.Module + "/internal/envd/process"}, forbidden...)
	if got := deps.Outside(pkgs, allowed...); !slices.Equal(got, forbidden) {
		t.Fatalf("fence reported %v, want %v", got, forbidden)
	}
}
