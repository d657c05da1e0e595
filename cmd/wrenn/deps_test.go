package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/testutil/deps"
)

// allowed is the import fence of wrenn (ARCHITECTURE.md, "Where code goes").
//
// The CLI talks to the platform over its public API and starts the other binaries as processes
// (`wrenn up`): it never links the control plane's or the agent's code.
var allowed = []string{"cmd/wrenn", "internal/cli/..."}

func TestCLIDependencies(t *testing.T) {
	for _, pkg := range deps.Outside(deps.List(t, "."), allowed...) {
		t.Errorf("wrenn imports %s; it may import only %s", pkg, strings.Join(allowed, ", "))
	}
}

// TestFenceReports feeds the fence a dependency list with forbidden packages: it must name them.
func TestFenceReports(t *testing.T) {
	forbidden := []string{deps.Module + "/internal/hostagent/images", deps.Module + "/internal/controlplane/ids", deps.Module + "/api/hostagent/hostagent/v1"}
	pkgs := append([]string{"fmt", deps.Module + "/internal/cli/up"}, forbidden...)
	if got := deps.Outside(pkgs, allowed...); !slices.Equal(got, forbidden) {
		t.Fatalf("fence reported %v, want %v", got, forbidden)
	}
}
