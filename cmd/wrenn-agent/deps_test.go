package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/testutil/deps"
)

// allowed is the import fence of wrenn-agent (ARCHITECTURE.md, "Where code goes").
//
// The host agent depends on the contracts, its own packages and the few shared ones; never on the
// control plane, the CLI or envd (it talks to envd through the api/envd contracts only).
var allowed = []string{"cmd/wrenn-agent", "api/...", "internal/hostagent/...", "internal/apierr", "internal/pki", "internal/telemetry/..."}

func TestAgentDependencies(t *testing.T) {
	for _, pkg := range deps.Outside(deps.List(t, "."), allowed...) {
		t.Errorf("wrenn-agent imports %s; it may import only %s", pkg, strings.Join(allowed, ", "))
	}
}

// TestFenceReports feeds the fence a dependency list with forbidden packages: it must name them.
func TestFenceReports(t *testing.T) {
	forbidden := []string{deps.Module + "/internal/controlplane/portproxy", deps.Module + "/internal/cli", deps.Module + "/internal/envd/process", deps.Module + "/internal/testutil"}
	pkgs := append([]string{"fmt", deps.Module + "/internal/hostagent/capsules"}, forbidden...)
	if got := deps.Outside(pkgs, allowed...); !slices.Equal(got, forbidden) {
		t.Fatalf("fence reported %v, want %v", got, forbidden)
	}
}
