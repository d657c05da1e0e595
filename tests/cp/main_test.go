// Package cp_test drives the real control plane binary (wrenn-cp) against real PostgreSQL and real host
// agents (wrenn-agent with real gVisor capsules), registered over the API and called over mutual TLS.
package cp_test

import (
	"testing"

	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
