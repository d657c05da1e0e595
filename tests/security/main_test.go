// Package security_test is the attacker suite (docs/security.md): a real control plane, a real host
// agent and real capsules, attacked the way the threat model says they can be — from the network, from
// inside a capsule and as a team member — with network namespaces for every "other" network. Every
// refused attempt is paired with the same request carrying the right credential, which must work.
package security_test

import (
	"testing"

	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }
