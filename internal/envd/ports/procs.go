package ports

import (
	"errors"
	"io"
	"os"
	"strconv"
)

// DefaultProc is where OnlyProcess lists processes by default.
const DefaultProc = "/proc"

// OnlyProcess reports whether self is the only process listed in procDir (a
// proc file system). Zombies count as processes. A directory that cannot be
// read counts as "not alone", so the scanner keeps polling.
func OnlyProcess(procDir string, self int) bool {
	d, err := os.Open(procDir)
	if err != nil {
		return false
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(64)
		for _, n := range names {
			if pid, err := strconv.Atoi(n); err == nil && pid != self {
				return false
			}
		}
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}
