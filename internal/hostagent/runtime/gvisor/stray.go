package gvisor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// strays finds sandbox and gofer processes of this runtime (their command
// line names our state directory) by container id. A `runsc run` cut short
// (the agent was killed while it ran) can leave these processes without a
// container runsc would list.
func (r *Runtime) strays() map[string][]int {
	out := map[string][]int{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	rootFlag := "--root=" + r.cfg.StateDir
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "runsc") || !hasRoot(args, rootFlag, r.cfg.StateDir) {
			continue
		}
		id := args[len(args)-1]
		if checkID(id) == nil {
			out[id] = append(out[id], pid)
		}
	}
	return out
}

func hasRoot(args []string, flag, dir string) bool {
	for i, a := range args {
		if a == flag || (a == "--root" && i+1 < len(args) && args[i+1] == dir) {
			return true
		}
	}
	return false
}

// killStrays SIGKILLs the processes of container id and waits (briefly)
// for them to go.
func (r *Runtime) killStrays(id string) {
	pids := r.strays()[id]
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}
