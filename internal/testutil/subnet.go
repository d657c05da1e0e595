package testutil

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Subnet reserves a 10.N.0.0/16 capsule address pool for one test's agent, N in 100–239, that no
// other test process holds and no interface of the host uses. Test packages run in parallel, each with
// its own agents: without the reservation two agents could hand out the same addresses.
func Subnet(t testing.TB) string {
	t.Helper()
	n := reserve(t, "wrenn-test-subnets", 100, 140, func(n int) string { return fmt.Sprintf(" 10.%d.", n) })
	return fmt.Sprintf("10.%d.0.0/16", n)
}

// reserve picks N in [first, first+count) whose address prefix (as ip -o addr prints it) no interface
// of the host uses and that no other test process holds: a lock file per N under os.TempDir()/dir,
// flock'd until the test ends (registered before the caller's cleanups, so released after them).
func reserve(t testing.TB, dir string, first, count int, prefix func(int) string) int {
	t.Helper()
	dir = filepath.Join(os.TempDir(), dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "-o", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip addr show: %v", err)
	}
	start := rand.IntN(count)
	for i := range count {
		n := first + (start+i)%count
		if strings.Contains(string(out), prefix(n)) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(n)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		t.Cleanup(func() { f.Close() }) // closing releases the lock
		return n
	}
	t.Fatalf("no free address range left in %s", dir)
	return 0
}
