package gvisor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// restoreLimitWait bounds how long putting a memory limit back waits for
	// the sandbox to return memory it no longer uses. Not long: after a
	// large file the sentry's Go heap shrinks only at its next GC, which
	// may be minutes away.
	restoreLimitWait = time.Second
	restoreLimitPoll = 100 * time.Millisecond
	// unlimitedV1 is where cgroup v1 reports "no limit" (about 2^63).
	unlimitedV1 = 1 << 62
)

// raiseMemoryLimit adds headroom bytes to the memory limit of pid's cgroup
// and returns a function that puts the old limit back. That function tries
// for up to restoreLimitWait (cgroup v1 refuses a limit under the usage it
// cannot reclaim; on v2, which would OOM-kill instead, it waits for the
// usage to fit) and otherwise leaves the raised limit in place and says so.
// A cgroup without a limit is left alone.
func raiseMemoryLimit(pid int, headroom uint64) (restore func() error, err error) {
	dir, err := cgroupDir(pid, "memory")
	if err != nil {
		return nil, err
	}
	// cgroup v1 refuses a limit under the usage it cannot reclaim; v2 would
	// OOM-kill, so there the usage (page cache included) is checked first.
	limitFile, usageFile := filepath.Join(dir, "memory.limit_in_bytes"), ""
	if _, err := os.Stat(limitFile); errors.Is(err, fs.ErrNotExist) {
		limitFile, usageFile = filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.current")
	}
	b, err := os.ReadFile(limitFile)
	if err != nil {
		return nil, err
	}
	old := strings.TrimSpace(string(b))
	limit, err := strconv.ParseUint(old, 10, 64)
	if old == "max" || (err == nil && limit >= unlimitedV1) {
		return func() error { return nil }, nil
	} else if err != nil {
		return nil, fmt.Errorf("parse %s: %w", limitFile, err)
	}
	if err := os.WriteFile(limitFile, []byte(strconv.FormatUint(limit+headroom, 10)), 0); err != nil {
		return nil, fmt.Errorf("raise memory limit: %w", err)
	}
	return func() error {
		deadline := time.Now().Add(restoreLimitWait)
		for {
			var err error
			if usageFile != "" {
				var usage uint64
				if usage, err = readUint(usageFile); err == nil && usage > limit {
					err = fmt.Errorf("usage %d is over it", usage)
				}
			}
			if err == nil {
				if err = os.WriteFile(limitFile, []byte(old), 0); err == nil {
					return nil
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("memory limit of %s left at %d bytes, not put back to %s: %w", dir, limit+headroom, old, err)
			}
			time.Sleep(restoreLimitPoll)
		}
	}, nil
}
