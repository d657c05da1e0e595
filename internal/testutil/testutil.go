// Package testutil holds helpers shared by Wrenn's integration tests: root
// checks, building binaries, running envd, PostgreSQL databases, and creating
// users and network namespaces that are removed again when a test ends.
package testutil

import (
	"os"
	"testing"
)

// inCI reports whether the tests run in CI, where every prerequisite must be
// present: a skip there would hide a broken machine setup.
func inCI() bool { return os.Getenv("CI") == "true" }

// SkipUnlessCI skips the test with the given reason, or fails it in CI.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf("CI=true but prerequisite missing: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot skips the test when not running as root (fails in CI).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipUnlessCI(t, "needs root (uid 0), running as uid %d", os.Geteuid())
	}
}

// Integration marks a black-box test that runs real binaries as root: it is
// skipped with -short and needs root.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	RequireRoot(t)
}

// Main runs the tests of a package and then removes the binaries BuildBinary
// built and stops the PostgreSQL cluster Postgres started; use it from TestMain.
func Main(m *testing.M) {
	mainActive = true
	code := m.Run()
	removeBuilds()
	stopPostgres()
	os.Exit(code)
}
