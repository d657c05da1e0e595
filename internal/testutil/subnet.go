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
// other test process holds (a lock file per N, flock'd until the test ends) and no interface of the
// host uses. Test packages run in parallel, each with its own agents: without the reservation two
// agents could hand out the same addresses.
func Subnet(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "wrenn-test-subnets")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "-o", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip addr show: %v", err)
	}
	start := rand.IntN(140)
	for i := range 140 {
		n := 100 + (start+i)%140
		if strings.Contains(string(out), fmt.Sprintf(" 10.%d.", n)) {
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
		return fmt.Sprintf("10.%d.0.0/16", n)
	}
	t.Fatal("no free 10.N.0.0/16 capsule subnet")
	return ""
}
