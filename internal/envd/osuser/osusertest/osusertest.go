// Package osusertest gives envd's package tests a fixture user database, so
// they need no real accounts: alice exists only there, and chown to her ids
// works as root all the same.
package osusertest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// Alice's ids in the fixture database.
const (
	AliceUID = 4242
	AliceGID = 4343
)

// AliceHome is alice's home directory; set by Main.
var AliceHome string

// Main points osuser at a fixture database with root and alice (home
// created), calls ready, runs the tests, removes the fixture and fails the
// run if goroutines leaked. Use it from TestMain.
func Main(m *testing.M, prefix string, ready func()) {
	dir, err := os.MkdirTemp("", prefix+"-users-")
	if err == nil {
		err = setup(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ready != nil {
		ready()
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

func setup(dir string) error {
	AliceHome = filepath.Join(dir, "home", "alice")
	osuser.PasswdFile = filepath.Join(dir, "passwd")
	osuser.GroupFile = filepath.Join(dir, "group")
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nalice:x:%d:%d::%s:/bin/sh\n", AliceUID, AliceGID, AliceHome)
	group := fmt.Sprintf("root:x:0:\nalicegrp:x:%d:\n", AliceGID)
	if err := os.WriteFile(osuser.PasswdFile, []byte(passwd), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(osuser.GroupFile, []byte(group), 0o644); err != nil {
		return err
	}
	return os.MkdirAll(AliceHome, 0o755)
}
