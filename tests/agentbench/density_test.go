package agentbench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
)

// --- 6. density: what idle capsules cost the host -----------------------------
//
// BenchmarkAgentDensity and BenchmarkRawRunscDensity start N idle capsules
// (agent, minimal image) or N raw runsc sandboxes running `sleep` (same
// image, flags, OCI limits, one namespace each) and measure, after a settle
// time, the host CPU they use while idle (their cgroups' CPU time, plus the
// agent's own process for the agent side) per capsule in % of one core, and
// their memory. The agent side also times execs with one capsule alive and
// with N alive. Every loop iteration is one CPU window.
//
// Environment (docs/benchmarks.md, "Density"):
//
//	WRENN_DENSITY_N       capsules (default 10)
//	WRENN_DENSITY_SETTLE  wait after the last start before measuring (default 60s: envd's port
//	                      scanner and the agent's sampling stay at their fast rate for ~45 s after
//	                      a start)
//	WRENN_DENSITY_WINDOW  length of one CPU window, one per loop iteration (default 5s)

const (
	densityExecs   = 40  // execs per exec p50
	densityMemMB   = 128 // per capsule: 200 of them fit a 24 GiB host with room to spare
	densityDefault = 10
)

func densityEnv(b *testing.B) (n int, settle, window time.Duration) {
	b.Helper()
	n, settle, window = densityDefault, time.Minute, 5*time.Second
	if v := os.Getenv("WRENN_DENSITY_N"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 1 {
			b.Fatalf("WRENN_DENSITY_N=%q: want a positive integer", v)
		}
		n = i
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"WRENN_DENSITY_SETTLE", &settle}, {"WRENN_DENSITY_WINDOW", &window}} {
		if v := os.Getenv(d.name); v != "" {
			x, err := time.ParseDuration(v)
			if err != nil || x < 0 {
				b.Fatalf("%s=%q: want a duration", d.name, v)
			}
			*d.to = x
		}
	}
	return n, settle, max(window, time.Second)
}

// cgroupCPU returns the CPU time, in ns, charged to the cgroup parent (the
// capsules' common parent) and everything below it.
func cgroupCPU(parent string) (int64, error) {
	if v, err := readInt(filepath.Join("/sys/fs/cgroup/cpuacct", parent, "cpuacct.usage")); err == nil {
		return v, nil // v1
	}
	for _, root := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} { // hybrid, pure v2
		b, err := os.ReadFile(filepath.Join(root, parent, "cpu.stat"))
		if err != nil {
			continue
		}
		for l := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(l, "usage_usec "); ok {
				us, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
				return us * 1000, err
			}
		}
	}
	return 0, fmt.Errorf("no cpu accounting for cgroup %s", parent)
}

// selfCPU is the CPU time of this process (the benchmark, which hosts the
// agent), in ns.
func selfCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// idleCPU runs the benchmark's loop, one window per iteration, and reports
// the CPU the capsules under parent used (and, with agent set, this
// process) per capsule, in % of one core.
func idleCPU(b *testing.B, parent string, n int, window time.Duration, agent bool) {
	b.Helper()
	cg0, err := cgroupCPU(parent)
	if err != nil {
		b.Fatal(err)
	}
	self0, start := selfCPU(), time.Now()
	for b.Loop() {
		time.Sleep(window)
	}
	wall := time.Since(start)
	cg1, err := cgroupCPU(parent)
	if err != nil {
		b.Fatal(err)
	}
	self1 := selfCPU()
	pct := func(ns int64) float64 { return float64(ns) / float64(wall.Nanoseconds()) * 100 / float64(n) }
	sandboxes := pct(cg1 - cg0)
	if !agent {
		b.ReportMetric(sandboxes, "cpu-%/capsule")
		return
	}
	own := pct(self1 - self0)
	b.ReportMetric(sandboxes+own, "cpu-%/capsule")
	b.ReportMetric(sandboxes, "sandbox-cpu-%/capsule")
	b.ReportMetric(own, "agent-cpu-%/capsule")
}

// densityMemory reports the mean PSS and cgroup charge of the capsules.
func densityMemory(b *testing.B, cgroups []string) {
	b.Helper()
	var total hostMemory
	for _, cg := range cgroups {
		m, err := memoryOf(cg)
		if err != nil {
			b.Fatalf("memory of %s: %v", cg, err)
		}
		total.add(m)
	}
	per := float64(len(cgroups) << 20)
	b.ReportMetric(float64(total.pss)/per, "MiB/capsule")
	b.ReportMetric(float64(total.cgroup)/per, "cgroup-MiB/capsule")
}

// execP50 runs `true` densityExecs times through envd, round robin over
// addrs, and returns the median in ms.
func execP50(ctx context.Context, addrs []string) (float64, error) {
	var lat latencies
	for i := range densityExecs {
		var err error
		lat.time(func() { err = shell(ctx, addrs[i%len(addrs)], "true") })
		if err != nil {
			return 0, err
		}
	}
	slices.Sort(lat)
	return float64(lat[len(lat)/2].Microseconds()) / 1000, nil
}

func BenchmarkAgentDensity(b *testing.B) {
	n, settle, window := densityEnv(b)
	h := newAgentHost(b, newSetup(b))
	ctx := ctxFor(b)
	first := h.mustCreate(b, densityMemMB)
	if _, err := execP50(ctx, []string{first.HostIP}); err != nil { // warm-up
		b.Fatalf("exec: %v", err)
	}
	one, err := execP50(ctx, []string{first.HostIP})
	if err != nil {
		b.Fatalf("exec: %v", err)
	}
	infos := []capsules.Info{first}
	for len(infos) < n {
		info, err := h.create(ctx, densityMemMB)
		if err != nil {
			b.Fatalf("create capsule %d of %d: %v", len(infos)+1, n, err)
		}
		infos = append(infos, info)
	}
	time.Sleep(settle)
	idleCPU(b, h.cgroup, n, window, true)
	var cgroups, addrs []string
	for _, info := range infos {
		cgroups = append(cgroups, filepath.Join(h.cgroup, info.ID))
		addrs = append(addrs, info.HostIP)
	}
	densityMemory(b, cgroups)
	all, err := execP50(ctx, addrs)
	if err != nil {
		b.Fatalf("exec with %d alive: %v", n, err)
	}
	b.ReportMetric(one, "exec1-ms/p50")
	b.ReportMetric(all, "execN-ms/p50")
	b.ReportMetric(float64(n), "capsules")
}

func BenchmarkRawRunscDensity(b *testing.B) {
	n, settle, window := densityEnv(b)
	h := newRawHost(b, newSetup(b))
	ctx := ctxFor(b)
	var cgroups []string
	for i := range n {
		c := h.capsule(h.netns(b), densityMemMB)
		if err := h.runSleep(ctx, c); err != nil {
			b.Fatalf("run sandbox %d of %d: %v", i+1, n, err)
		}
		cgroups = append(cgroups, filepath.Join(h.cgroup, c.id))
	}
	time.Sleep(settle)
	idleCPU(b, h.cgroup, n, window, false)
	densityMemory(b, cgroups)
	b.ReportMetric(float64(n), "capsules")
}

// runSleep boots c with `sleep` as its only process instead of envd: the
// runtime's own idle floor.
func (h *rawHost) runSleep(ctx context.Context, c rawCapsule) error {
	if err := readdress(c.ns); err != nil {
		return err
	}
	dir := filepath.Join(h.dir, c.id)
	meta := filepath.Join(dir, "meta")
	bundle := filepath.Join(dir, "bundle")
	for _, d := range []string{meta, bundle} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	spec := h.spec(c, meta)
	spec.Process.Args = []string{"/bin/sleep", "1000000"}
	if err := writeSpec(bundle, spec); err != nil {
		return err
	}
	if err := h.detached(ctx, c.id, "run", "-detach", "--bundle", bundle, c.id); err != nil {
		return err
	}
	if err := h.runsc(ctx, c.id, "state", c.id); err != nil {
		return errors.Join(errors.New("sandbox not running after start"), err)
	}
	return nil
}
