package rpc

import (
	"regexp"
	"strings"
)

// Bounds of capsule resources; 0 in a request means the default.
const (
	defaultVCPUs    = 1
	minVCPUs        = 1
	maxVCPUs        = 64
	defaultMemoryMB = 512
	minMemoryMB     = 128
	maxMemoryMB     = 256 << 10
	defaultDiskMB   = 2048
	minDiskMB       = 256
	maxDiskMB       = 1 << 20
	maxPtyDim       = 1000
	maxPathLen      = 4096
	maxNameLen      = 128 // team and template ids: one path element on the host
	maxUserLen      = 64
)

var (
	// sandboxIDRe: "cl-" + 25 base36 digits (docs/api.md).
	sandboxIDRe = regexp.MustCompile(`^cl-[0-9a-z]{25}$`)
	tagRe       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	nameRe      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

func checkSandboxID(id string) error {
	if !sandboxIDRe.MatchString(id) {
		return invalid("invalid sandbox ID %q: want cl- followed by 25 characters [0-9a-z]", id)
	}
	return nil
}

func checkTag(tag string) error {
	if !tagRe.MatchString(tag) {
		return invalid("invalid tag %q: want 1-64 characters [A-Za-z0-9._-], starting with a letter or digit", tag)
	}
	return nil
}

// checkName validates a team or template id; empty passes unless required.
func checkName(field, v string, required bool) error {
	if v == "" {
		if required {
			return invalid("%s is required", field)
		}
		return nil
	}
	if len(v) > maxNameLen || !nameRe.MatchString(v) {
		return invalid("invalid %s %q: want up to %d characters [A-Za-z0-9._-], starting with a letter or digit", field, v, maxNameLen)
	}
	return nil
}

// checkUser validates a user name; empty means the default user.
func checkUser(field, v string) error {
	if len(v) > maxUserLen || strings.ContainsAny(v, ":/") || hasControl(v) {
		return invalid("invalid %s %q", field, v)
	}
	return nil
}

func checkPath(p string) error {
	switch {
	case p == "":
		return invalid("path is required")
	case len(p) > maxPathLen:
		return invalid("path is longer than %d bytes", maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return invalid("path contains a NUL byte")
	}
	return nil
}

func checkEnv(field string, env map[string]string) error {
	for k, v := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return invalid("invalid %s name %q", field, k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return invalid("%s %s contains a NUL byte", field, k)
		}
	}
	return nil
}

func checkCmd(cmd string, args []string) error {
	if cmd == "" {
		return invalid("cmd is required")
	}
	if strings.IndexByte(cmd, 0) >= 0 {
		return invalid("cmd contains a NUL byte")
	}
	for _, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("argument %q contains a NUL byte", a)
		}
	}
	return nil
}

func checkCwd(cwd string) error {
	if strings.IndexByte(cwd, 0) >= 0 || len(cwd) > maxPathLen {
		return invalid("invalid cwd")
	}
	return nil
}

func checkPtySize(cols, rows uint32) error {
	if cols < 1 || cols > maxPtyDim || rows < 1 || rows > maxPtyDim {
		return invalid("invalid terminal size %dx%d: cols and rows must be 1-%d", cols, rows, maxPtyDim)
	}
	return nil
}

func checkTimeout(sec int32) error {
	if sec < 0 {
		return invalid("timeout_sec must not be negative")
	}
	return nil
}

// resources applies defaults to and checks a capsule's resources.
func resources(vcpus, memoryMB, diskMB int32) (int, int, int, error) {
	if vcpus == 0 {
		vcpus = defaultVCPUs
	}
	if memoryMB == 0 {
		memoryMB = defaultMemoryMB
	}
	if diskMB == 0 {
		diskMB = defaultDiskMB
	}
	switch {
	case vcpus < minVCPUs || vcpus > maxVCPUs:
		return 0, 0, 0, invalid("vcpus %d out of range %d-%d", vcpus, minVCPUs, maxVCPUs)
	case memoryMB < minMemoryMB || memoryMB > maxMemoryMB:
		return 0, 0, 0, invalid("memory_mb %d out of range %d-%d", memoryMB, minMemoryMB, maxMemoryMB)
	case diskMB < minDiskMB || diskMB > maxDiskMB:
		return 0, 0, 0, invalid("disk_size_mb %d out of range %d-%d (0: default %d)", diskMB, minDiskMB, maxDiskMB, defaultDiskMB)
	}
	return int(vcpus), int(memoryMB), int(diskMB), nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
