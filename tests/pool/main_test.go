// Package pool_test drives warm pools and fork through the control plane (wrenn-cp) with a real host
// agent and real gVisor capsules (internal/testutil/platform).
package pool_test

import (
	"testing"

	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
