// Package builder_test drives the template builder end to end: real control planes (wrenn-cp), real
// PostgreSQL and a real host agent building templates from the Debian `base` image in gVisor capsules.
package builder_test

import (
	"testing"

	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
