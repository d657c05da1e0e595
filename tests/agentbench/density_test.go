package agentbench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/testutil/rawrunsc"
)

// --- 6. density: what idle capsules cost the host -----------------------------
//
// BenchmarkAgentDensity and BenchmarkRawRunscDensity start N idle capsules
// (agent, minimal image) or N raw runsc sandboxes running `sleep` (same
// image, flags, OCI limits, one namespace each) and measure, after a settle
// time, the host CPU they use while idle (their cgroups' CPU time, plus the
// agent's own process for the agent side) per capsule in % of one core, and
// their memory. The agent side also times execs with one capsule alive and
// with N alive (round robin over idle capsules, and on the first capsule
// again). Every loop iteration is one CPU window.
//
// Environment (docs/benchmarks.md, "Density"):
//
//	WRENN_DENSITY_N       capsules (default 10)
//	WRENN_DENSITY_SETTLE  wait after the last start before measuring (default 90s: the benchmark's
//	                      own connections to envd close after 60 s idle, envd's collector sleeps
//	                      5 s later)
//	WRENN_DENSITY_WINDOW  length of one CPU window, one per loop iteration (default 2m: the
//	                      sentry's own garbage collection runs every 2 minutes; shorter windows
//	                      see it or not by chance)
//	WRENN_DENSITY_SAMPLE_ALL=1  the agent samples every capsule every 500 ms, idle or not (the
//	                      behaviour before -metrics-idle-interval), for comparison

const (
	densityExecs   = 40  // execs per exec p50
	densityMemMB   = 128 // per capsule: 200 of them fit a 24 GiB host with room to spare
	densityDefault = 10
)

func densityEnv(b *testing.B) (n int, settle, window time.Duration) {
	b.Helper()
	n, settle, window = densityDefault, 90*time.Second, 2*time.Minute
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

// tasksCPU returns the CPU time, in ns, that the threads of every process
// in the capsules' cgroups have used so far, by thread (/proc/<pid>/task/<tid>/schedstat,
// nanosecond precision, unlike the clock ticks of /proc/<pid>/stat).
func tasksCPU(cgroups []string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, cg := range cgroups {
		dir, _, err := memoryCgroup(cg)
		if err != nil {
			return nil, err
		}
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return nil, err
		}
		for _, pid := range strings.Fields(string(procs)) {
			tasks, _ := os.ReadDir(filepath.Join("/proc", pid, "task"))
			for _, t := range tasks {
				b, err := os.ReadFile(filepath.Join("/proc", pid, "task", t.Name(), "schedstat"))
				if err != nil {
					continue // exited meanwhile
				}
				f := strings.Fields(string(b))
				if len(f) == 0 {
					continue
				}
				if ns, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					out[pid+"/"+t.Name()] = ns
				}
			}
		}
	}
	return out, nil
}

// cpuDelta sums, over the threads alive at both reads, the CPU time used
// between them.
func cpuDelta(before, after map[string]int64) int64 {
	var d int64
	for k, v := range after {
		if w, ok := before[k]; ok && v >= w {
			d += v - w
		}
	}
	return d
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
// the CPU the processes in the capsules' cgroups used (and, with agent set, this
// process) per capsule, in % of one core.
func idleCPU(b *testing.B, cgroups []string, window time.Duration, agent bool) {
	b.Helper()
	n := len(cgroups)
	cg0, err := tasksCPU(cgroups)
	if err != nil {
		b.Fatal(err)
	}
	self0, start := selfCPU(), time.Now()
	for b.Loop() {
		time.Sleep(window)
	}
	wall := time.Since(start)
	cg1, err := tasksCPU(cgroups)
	if err != nil {
		b.Fatal(err)
	}
	self1 := selfCPU()
	pct := func(ns int64) float64 { return float64(ns) / float64(wall.Nanoseconds()) * 100 / float64(n) }
	sandboxes := pct(cpuDelta(cg0, cg1))
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

// execP50 runs `true` densityExecs times in the capsules ids, round robin,
// through the agent's envd client (as the agent's Exec does), and returns
// the median in ms.
func execP50(ctx context.Context, h *agentHost, ids []string) (float64, error) {
	var lat latencies
	for i := range densityExecs {
		var err error
		lat.time(func() {
			c, _, done, e := h.Envd(ctx, ids[i%len(ids)])
			if e != nil {
				err = e
				return
			}
			defer done()
			err = shellWith(ctx, c, "true")
		})
		if err != nil {
			return 0, err
		}
	}
	slices.Sort(lat)
	return float64(lat[len(lat)/2].Microseconds()) / 1000, nil
}

func BenchmarkAgentDensity(b *testing.B) {
	n, settle, window := densityEnv(b)
	var opts []func(*capsules.Config)
	if os.Getenv("WRENN_DENSITY_SAMPLE_ALL") == "1" {
		opts = append(opts, func(c *capsules.Config) { c.MetricsIdleEvery = capsules.DefaultMetricsEvery })
	}
	h := newAgentHost(b, newSetup(b), opts...)
	ctx := ctxFor(b)
	first := h.mustCreate(b, densityMemMB)
	if _, err := execP50(ctx, h, []string{first.ID}); err != nil { // warm-up
		b.Fatalf("exec: %v", err)
	}
	one, err := execP50(ctx, h, []string{first.ID})
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
	var cgroups, ids []string
	for _, info := range infos {
		cgroups = append(cgroups, filepath.Join(h.Cgroup, info.ID))
		ids = append(ids, info.ID)
	}
	time.Sleep(settle)
	idleCPU(b, cgroups, window, true)
	densityMemory(b, cgroups)
	// Round robin over capsules that idled for minutes: each exec also pays
	// for a cold capsule (a new connection, envd's collector and the
	// sentry's threads woken), which the warmed-up 1-alive figure does not.
	all, err := execP50(ctx, h, ids)
	if err != nil {
		b.Fatalf("exec with %d alive: %v", n, err)
	}
	// The 1-alive figure's capsule again, warmed up the same way: what N
	// alive capsules cost an exec, like for like.
	if _, err := execP50(ctx, h, []string{first.ID}); err != nil {
		b.Fatalf("exec: %v", err)
	}
	same, err := execP50(ctx, h, []string{first.ID})
	if err != nil {
		b.Fatalf("exec with %d alive: %v", n, err)
	}
	b.ReportMetric(one, "exec1-ms/p50")
	b.ReportMetric(all, "execN-ms/p50")
	b.ReportMetric(same, "execN-same-ms/p50")
	b.ReportMetric(float64(n), "capsules")
}

func BenchmarkRawRunscDensity(b *testing.B) { benchRawDensity(b, runSleep) }

// BenchmarkRawRunscDensityEnvd is BenchmarkRawRunscDensity with envd as the
// sandboxes' process (started, /health, /init, then left alone) instead of
// `sleep`: what envd itself adds to the runtime's floor, without the agent.
func BenchmarkRawRunscDensityEnvd(b *testing.B) {
	benchRawDensity(b, func(ctx context.Context, h *rawrunsc.Host, c rawrunsc.Capsule) error { return h.Run(ctx, c) })
}

func benchRawDensity(b *testing.B, start func(context.Context, *rawrunsc.Host, rawrunsc.Capsule) error) {
	n, settle, window := densityEnv(b)
	h := newRawHost(b, newSetup(b))
	ctx := ctxFor(b)
	var cgroups []string
	for i := range n {
		c := h.Capsule(h.Netns(b), densityMemMB)
		if err := start(ctx, h, c); err != nil {
			b.Fatalf("run sandbox %d of %d: %v", i+1, n, err)
		}
		cgroups = append(cgroups, filepath.Join(h.Cgroup, c.ID))
	}
	time.Sleep(settle)
	idleCPU(b, cgroups, window, false)
	densityMemory(b, cgroups)
	b.ReportMetric(float64(n), "capsules")
}

// runSleep boots c with `sleep` as its only process instead of envd: the
// runtime's own idle floor.
func runSleep(ctx context.Context, h *rawrunsc.Host, c rawrunsc.Capsule) error {
	if err := rawrunsc.Readdress(c.NS); err != nil {
		return err
	}
	dir := h.CapsuleDir(c.ID)
	meta := filepath.Join(dir, "meta")
	bundle := filepath.Join(dir, "bundle")
	for _, d := range []string{meta, bundle} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	spec := h.Spec(c, meta)
	spec.Process.Args = []string{"/bin/sleep", "1000000"}
	if err := rawrunsc.WriteSpec(bundle, spec); err != nil {
		return err
	}
	if err := h.Detached(ctx, c.ID, "run", "-detach", "--bundle", bundle, c.ID); err != nil {
		return err
	}
	if err := h.Runsc(ctx, c.ID, "state", c.ID); err != nil {
		return errors.Join(errors.New("sandbox not running after start"), err)
	}
	return nil
}
