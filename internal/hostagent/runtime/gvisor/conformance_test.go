package gvisor

import (
	"testing"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
	"github.com/wrenn/wrenn/internal/hostagent/runtime/runtimetest"
)

// TestConformance runs the Runtime contract suite the fake runtime passes
// against runsc.
func TestConformance(t *testing.T) {
	f := newFixture(t)
	runtimetest.Conformance(t, func(*testing.T) runtimetest.Backend {
		return runtimetest.Backend{Runtime: f.rt, Spec: func(t *testing.T, id string) runtime.Spec {
			return f.spec(t, id, newNet(t))
		}}
	})
}
