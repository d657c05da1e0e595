package deps

import (
	"slices"
	"testing"
)

func TestOutside(t *testing.T) {
	pkgs := []string{
		"fmt",
		"connectrpc.com/connect",
		Module + "/cmd/tool",
		Module + "/api/envd/process",
		Module + "/internal/apierr",
		Module + "/internal/apierrx",
		Module + "/internal/pki/sub",
		Module + "/internal/telemetry",
		Module + "/internal/telemetry/x",
		Module + "/internal/controlplane/store",
	}
	got := Outside(pkgs, "cmd/tool", "api/...", "internal/apierr", "internal/pki", "internal/telemetry/...")
	want := []string{Module + "/internal/apierrx", Module + "/internal/pki/sub", Module + "/internal/controlplane/store"}
	if !slices.Equal(got, want) {
		t.Fatalf("Outside = %v, want %v", got, want)
	}
}
