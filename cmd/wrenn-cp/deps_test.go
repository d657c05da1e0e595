package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/testutil/deps"
)

// allowed is the import fence of wrenn-cp (ARCHITECTURE.md, "Where code goes").
//
// The control plane depends on the contracts, its own packages and the few shared ones; never on the
// host agent, the CLI or envd. web is the embedded dashboard (static files and their handler).
var allowed = []string{"cmd/wrenn-cp", "api/...", "internal/controlplane/...", "internal/apierr", "internal/pki", "internal/telemetry/...", "web"}

func TestControlPlaneDependencies(t *testing.T) {
	for _, pkg := range deps.Outside(deps.List(t, "."), allowed...) {
		t.Errorf("wrenn-cp imports %s; it may import only %s", pkg, strings.Join(allowed, ", "))
	}
}

// TestFenceReports feeds the fence a dependency list with forbidden packages: it must name them.
func TestFenceReports(t *testing.T) {
	forbidden := []string{deps.Module + "/internal/hostagent/capsules", deps.Module + "/internal/cli/up", deps.Module + "/internal/envd/fs"}
	pkgs := append([]string{"fmt", deps.Module + "/internal/controlplane/fleet"}, forbidden...)
	if got := deps.Outside(pkgs, allowed...); !slices.Equal(got, forbidden) {
		t.Fatalf("fence reported %v, want %v", got, forbidden)
	}
}
