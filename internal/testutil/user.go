package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// User is an OS user created for a test.
type User struct {
	Name string
	UID  int
	GID  int
	Home string
}

// RandomName returns prefix followed by n random hex digits.
func RandomName(prefix string, n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)[:n]
}

// CreateUser creates user name with a home directory (useradd -m). When the
// test ends, the user's remaining processes are killed and the user and its
// home are removed (userdel -r).
func CreateUser(t testing.TB, name string) User {
	t.Helper()
	RequireRoot(t)
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/bash", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		deleteUser(t, name)
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("lookup %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return User{Name: name, UID: uid, GID: gid, Home: u.HomeDir}
}

func deleteUser(t testing.TB, name string) {
	t.Helper()
	if u, err := user.Lookup(name); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		for range 3 {
			pids := pidsOfUID(uid)
			if len(pids) == 0 {
				break
			}
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil {
		// userdel -r exits 12 when the mail spool is missing; the user is gone then.
		if _, lerr := user.Lookup(name); lerr == nil {
			t.Errorf("userdel -r %s: %v\n%s", name, err, out)
		}
	}
}

// pidsOfUID lists processes whose real uid is uid.
func pidsOfUID(uid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st); err != nil {
			continue
		}
		if int(st.Uid) == uid {
			out = append(out, pid)
		}
	}
	return out
}
