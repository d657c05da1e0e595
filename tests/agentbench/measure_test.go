package agentbench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// hostMemory is what one capsule costs the host: the proportional set
// size of every process in its cgroup (runsc sandbox, gofer, systrap
// stubs), and what the cgroup is charged (including page cache and the
// sentry's memory file).
type hostMemory struct {
	pss    int64
	cgroup int64
}

func (m *hostMemory) add(o hostMemory) { m.pss += o.pss; m.cgroup += o.cgroup }

// memoryOf measures the capsule whose cgroup is cgroupPath (the OCI
// cgroupsPath, e.g. /parent/id).
func memoryOf(cgroupPath string) (hostMemory, error) {
	dir, usageFile, err := memoryCgroup(cgroupPath)
	if err != nil {
		return hostMemory{}, err
	}
	var m hostMemory
	usage, err := readInt(filepath.Join(dir, usageFile))
	if err != nil {
		return hostMemory{}, err
	}
	m.cgroup = usage
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return hostMemory{}, err
	}
	for _, f := range strings.Fields(string(procs)) {
		pss, err := pssOf(f)
		if err != nil {
			continue // exited meanwhile
		}
		m.pss += pss
	}
	if m.pss == 0 {
		return hostMemory{}, fmt.Errorf("cgroup %s has no processes", cgroupPath)
	}
	return m, nil
}

// memoryCgroup returns the directory of the memory cgroup at cgroupPath
// and the name of its usage file.
func memoryCgroup(cgroupPath string) (dir, usageFile string, err error) {
	type hierarchy struct{ dir, usage string }
	for _, h := range []hierarchy{
		{"/sys/fs/cgroup/memory", "memory.usage_in_bytes"}, // v1
		{"/sys/fs/cgroup/unified", "memory.current"},       // hybrid v2
		{"/sys/fs/cgroup", "memory.current"},               // pure v2
	} {
		d := filepath.Join(h.dir, cgroupPath)
		if _, err := os.Stat(filepath.Join(d, h.usage)); err == nil {
			return d, h.usage, nil
		}
	}
	return "", "", fmt.Errorf("no memory cgroup %s", cgroupPath)
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// pssOf reads Pss from /proc/<pid>/smaps_rollup, in bytes.
func pssOf(pid string) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", pid, "smaps_rollup"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("pid %s: no Pss", pid)
}

// dirtyScript fills n MiB of a tmpfs in the capsule with random data (not
// zero pages, which could be deduplicated) that stays in its memory.
func dirtyScript(mib int) string {
	return fmt.Sprintf("mkdir -p /dev/shm && dd if=/dev/urandom of=/dev/shm/dirty bs=1M count=%d 2>/dev/null && "+
		"test $(stat -c %%s /dev/shm/dirty) -eq %d", mib, mib<<20)
}

// shell runs script with /bin/sh through envd at addr and waits for it to
// end; a non-zero exit is an error carrying its output.
func shell(ctx context.Context, addr, script string) error {
	defer envdclient.CloseIdle()
	return shellWith(ctx, envdclient.New(addr), script)
}

// shellWith is shell through the envd client c.
func shellWith(ctx context.Context, c *envdclient.Client, script string) error {
	st, err := c.Process.Start(ctx, connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}},
	}))
	if err != nil {
		return fmt.Errorf("start %q: %w", script, err)
	}
	defer st.Close()
	var out strings.Builder
	for st.Receive() {
		ev := st.Msg().GetEvent()
		if d := ev.GetData(); d != nil {
			out.Write(d.GetStdout())
			out.Write(d.GetStderr())
		}
		if end := ev.GetEnd(); end != nil {
			if end.GetExitCode() != 0 || !end.GetExited() {
				return fmt.Errorf("%q: %s %s: %s", script, end.GetStatus(), end.GetError(), out.String())
			}
			return nil
		}
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("%q: %w", script, err)
	}
	return fmt.Errorf("%q: stream ended without an end event", script)
}
