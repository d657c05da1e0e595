package gvisor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const cgroupRoot = "/sys/fs/cgroup"

// cgroupDir returns the directory of pid's cgroup that holds controller's
// files: the v1 hierarchy of that controller when one is mounted, else the
// unified (v2) hierarchy.
func cgroupDir(pid int, controller string) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	var unified string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return filepath.Join(cgroupRoot, parts[1], parts[2]), nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if unified == "" {
		return "", fmt.Errorf("pid %d is in no %s cgroup", pid, controller)
	}
	// Hybrid hosts mount v2 at /sys/fs/cgroup/unified, pure v2 hosts at the root.
	if _, err := os.Stat(filepath.Join(cgroupRoot, "unified", "cgroup.controllers")); err == nil {
		return filepath.Join(cgroupRoot, "unified", unified), nil
	}
	return filepath.Join(cgroupRoot, unified), nil
}

// sandboxFiles is what Stats keeps of one sandbox between samples, so a
// sample of an idle capsule costs a handful of small reads (docs/agent.md#metrics):
// the sandbox PID, the cgroup directories holding its CPU time and memory
// charge, and the sandbox's open files that are its overlay filestore.
type sandboxFiles struct {
	pid       int
	cpuDir    string
	memDir    string
	filestore []string // /proc/<pid>/fd/<n> links to the filestore; nil: not looked up yet
}

// newSandboxFiles resolves the cgroup directories of the sandbox pid.
func newSandboxFiles(pid int) (*sandboxFiles, error) {
	cpuDir, err := cgroupDir(pid, "cpuacct")
	if err != nil {
		return nil, err
	}
	memDir, err := cgroupDir(pid, "memory")
	if err != nil {
		return nil, err
	}
	return &sandboxFiles{pid: pid, cpuDir: cpuDir, memDir: memDir}, nil
}

// usage reads the cgroup's CPU time (ns) and memory charge (bytes).
func (f *sandboxFiles) usage() (cpuNanos, memBytes uint64, err error) {
	if v, err := readUint(filepath.Join(f.cpuDir, "cpuacct.usage")); err == nil {
		cpuNanos = v
	} else if usec, err2 := statField(filepath.Join(f.cpuDir, "cpu.stat"), "usage_usec"); err2 == nil {
		cpuNanos = usec * 1000
	} else {
		return 0, 0, fmt.Errorf("cgroup cpu usage: %w", err)
	}
	if v, err := readUint(filepath.Join(f.memDir, "memory.usage_in_bytes")); err == nil {
		memBytes = v
	} else if v, err2 := readUint(filepath.Join(f.memDir, "memory.current")); err2 == nil {
		memBytes = v
	} else {
		return 0, 0, fmt.Errorf("cgroup memory usage: %w", err)
	}
	return cpuNanos, memBytes, nil
}

// diskBytes returns the disk space of the sandbox's overlay filestore. The
// filestore's descriptors are found once (runsc opens them at start) and
// checked on every call; when one no longer points at the filestore, they
// are looked up again.
func (f *sandboxFiles) diskBytes(capsuleDir string) uint64 {
	prefix := filepath.Join(capsuleDir, "runsc-filestore-")
	if f.filestore != nil {
		var total uint64
		valid := true
		for _, p := range f.filestore {
			target, err := os.Readlink(p)
			if err != nil || !strings.HasPrefix(target, prefix) {
				valid = false
				break
			}
			if n, err := diskUsage(p); err == nil {
				total += n
			}
		}
		if valid {
			return total
		}
	}
	f.filestore = filestoreFDs(f.pid, prefix)
	var total uint64
	for _, p := range f.filestore {
		if n, err := diskUsage(p); err == nil {
			total += n
		}
	}
	return total
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// statField reads one "key value" line of a flat-keyed cgroup file.
func statField(path, key string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, key)
}

// filestoreBytes returns the disk space taken by the overlay filestore of
// the sandbox pid: runsc creates it in the capsule directory and unlinks it,
// so it is found through the sandbox's open files.
func filestoreBytes(pid int, capsuleDir string) uint64 {
	var total uint64
	for _, p := range filestoreFDs(pid, filepath.Join(capsuleDir, "runsc-filestore-")) {
		if n, err := diskUsage(p); err == nil {
			total += n
		}
	}
	return total
}

// filestoreFDs returns the /proc/<pid>/fd entries of pid that point at a
// file whose path starts with prefix; an empty, non-nil slice when none does.
func filestoreFDs(pid int, prefix string) []string {
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	out := []string{}
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return out
	}
	for _, e := range ents {
		p := filepath.Join(fdDir, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, prefix) {
			out = append(out, p)
		}
	}
	return out
}

// diskUsage returns the bytes allocated to the file at path (sparse files
// count only what they use).
func diskUsage(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return uint64(st.Blocks) * 512, nil
}
