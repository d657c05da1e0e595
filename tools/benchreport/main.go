// Command benchreport turns `go test -bench` output into docs/benchmarks.md:
// every benchmark's median, and each Wrenn operation side by side with the
// raw baseline it is measured against.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// comparison pairs a Wrenn operation with its baseline and the target ratio.
type comparison struct {
	what, wrenn, baseline, target string
	// metric "ns" compares time per op (overhead = wrenn - baseline);
	// "MB/s" compares throughput (ratio = wrenn / baseline); any unit in
	// units compares that custom metric (b.ReportMetric).
	metric string
	// method says what the two benchmarks do, for the report's notes.
	method string
	// ratio shows the difference as wrenn / baseline ("0.21×") instead of the gap, for targets given
	// as a ratio.
	ratio bool
}

var comparisons = []comparison{
	{"exec `true` round trip", "ExecTrue", "ForkExecTrue", "adds < 2 ms per exec", "ns",
		"Process.Start of `true` through envd's process service (Connect, binary codec, loopback HTTP) until its end event, vs exec.Command(\"true\").Run() (fork, exec, wait) in the benchmark process.", false},
	{"file upload", "Upload", "LocalCopy", "≥ 70 % of a local copy", "MB/s",
		"64 MiB octet-stream POST /files over loopback HTTP into an existing file, vs a file-to-file copy of the same size on the same disk (Go's io.Copy, i.e. copy_file_range, what `cp` does).", false},
	{"file download", "Download/identity", "LocalCopy", "≥ 70 % of a local copy", "MB/s",
		"64 MiB GET /files over loopback HTTP, written to a file by the client, vs the same local copy.", false},
	{"file download, gzip", "Download/gzip", "LocalCopy", "none (opt-in; bound by compression)", "MB/s",
		"As above with Accept-Encoding: gzip; the data is incompressible, so this is the cost of compressing at BestSpeed.", false},

	// tests/cp: the control plane's REST API against the same call sent straight to the agent over the
	// same mutual-TLS transport, alternating in one loop (one benchmark, two metrics).
	{"control plane: create → first exec result", "ControlPlane/CreateExec", "ControlPlane/CreateExec", "control plane adds ≤ 5 ms p50", "ms/p50:direct-ms/p50",
		"POST /v1/capsules (minimal template, 256 MiB; scheduling, rows, the agent's CreateSandbox over mutual TLS) then POST /v1/sandboxes/{id}/exec of `echo x` until its 200, vs CreateSandbox then Exec sent to the same agent directly over mutual TLS with a certificate of the same CA; the two sides alternate and swap order every iteration. Destroys untimed.", false},
	{"control plane: exec round trip", "ControlPlane/Exec", "ControlPlane/Exec", "control plane adds ≤ 5 ms p50", "ms/p50:direct-ms/p50",
		"POST /v1/sandboxes/{id}/exec of `/bin/sh -c 'echo x'` with an API key (key lookup + use, capsule and host in one query, agent Exec over the pooled mTLS connection, activity update) vs the agent's Exec of the same capsule sent directly, the two alternating (order swapped every iteration).", false},
	{"control plane: pause", "ControlPlane/PauseResume", "ControlPlane/PauseResume", "control plane adds ≤ 5 ms p50", "pause-ms/p50:direct-pause-ms/p50",
		"POST /v1/capsules/{id}/pause (metrics tiers flushed from the agent and stored while the agent pauses, status row, audit entry) vs FlushSandboxMetrics + PauseSandbox sent directly, on the same capsule: each iteration is pause through the control plane, resume directly, pause directly, resume through the control plane (every pause follows a resume on both sides; the benchmark's control plane does not reconcile meanwhile).", false},
	{"control plane: resume", "ControlPlane/PauseResume", "ControlPlane/PauseResume", "control plane adds ≤ 5 ms p50", "resume-ms/p50:direct-resume-ms/p50",
		"POST /v1/capsules/{id}/resume (ResumeSandbox with the template's default user and env, status row, audit entry) vs ResumeSandbox sent directly, on the same capsule, in the sequence described for pause.", false},

	// tests/cp BenchmarkWarmStart: issue 15's warm start, all through the REST API of a control plane
	// and one agent, `base` template, the control plane's default shape (1 vCPU, 512 MB); each side
	// measured in the same loop, in a rotating order.
	{what: "API create from `base`, warm pool vs the same capsule's resume", wrenn: "WarmStart/Create", baseline: "WarmStart/Create",
		target: "pooled ≤ 0.25× the resume", metric: "pooled-ms/p50:resume-ms/p50", ratio: true,
		method: "POST /v1/capsules {template: base} until its 201 with a ready warm pool of one on the agent (set with PUT /v1/admin/templates/base/pool; the create takes the pooled capsule and sends /init with its identity; the benchmark checks the pool's hit counter on the agent's /metrics, and waits untimed for the refill) vs POST /v1/capsules/{id}/resume of that same capsule after POST …/pause (the pause follows the refill)."},
	{what: "API create from `base`, warm pool vs none", wrenn: "WarmStart/Create", baseline: "WarmStart/Create",
		target: "none (for scale)", metric: "pooled-ms/p50:unpooled-ms/p50", ratio: true,
		method: "The pooled create above vs the same POST /v1/capsules with the pool set to 0 (a `runsc run` boot of the Debian image)."},
	{what: "API create from `base`, warm pool vs raw restore", wrenn: "WarmStart/Create", baseline: "WarmStart/Create",
		target: "below the runtime's restore", metric: "pooled-ms/p50:raw-restore-ms/p50", ratio: true,
		method: "The pooled create above vs `runsc restore -detach` + envd /health + POST /init (internal/testutil/rawrunsc) of a checkpoint of a capsule booted by raw runsc from the agent's `base` image with the same shape, into a new container in a namespace made beforehand: the fastest a capsule starts without a pool."},
	{what: "API create → first exec result, warm pool vs none", wrenn: "WarmStart/Create", baseline: "WarmStart/Create",
		target: "≤ 0.3× today's (no pool)", metric: "pooled-exec-ms/p50:unpooled-exec-ms/p50", ratio: true,
		method: "POST /v1/capsules {template: base} then POST /v1/sandboxes/{id}/exec of `echo x` until its 200, with the ready pool vs without one (the same creates as the rows above, timed on to the exec's answer)."},
	{what: "API fork into 4 vs 4 creates from a snapshot", wrenn: "WarmStart/Fork4", baseline: "WarmStart/Fork4",
		target: "faster than 4 sequential template creates", metric: "fork-ms/p50:create4-ms/p50", ratio: true,
		method: "POST /v1/capsules/{id}/fork {count: 4} of a running `base` capsule (checkpoint with the source left running, 4 restores in parallel, /init each) vs 4 sequential POST /v1/capsules from a snapshot template (POST /v1/snapshots) of the same capsule, alternating. Destroys untimed. No warm pool."},

	// tests/agentbench: the host agent against raw runsc on the same
	// busybox image, envd binary, runsc flags, OCI config and limits.
	{"capsule create from image", "AgentCreate", "RawRunscCreate", "agent adds ≤ 20 %", "ms/p50",
		"agent.Create (minimal image, 1 vCPU, 256 MiB) until it returns — network namespace, veth and nftables entry, records, `runsc run -detach`, envd /health and /init — vs writing the OCI bundle, `runsc run -detach` in a pre-made namespace, polling envd /health every 10 ms until 200, then POST /init (the same steps by hand). Destroy between iterations is not timed. Median of the per-create latencies.", false},
	{"capsule create from template", "AgentCreateFromTemplate", "RawRunscCreateFromTemplate", "agent adds ≤ 20 %; p50 < 150 ms", "ms/p50",
		"agent.Create with the id of a template that agent.Snapshot made from a running capsule (new network, `runsc restore -detach`, /health, /init) vs `runsc restore -detach` of a checkpoint of the same kind of capsule into a new container id in a pre-made namespace with a different address, then /health and POST /init.", false},
	{"pause, idle capsule", "AgentPause/dirty=0MiB", "RawRunscPause/dirty=0MiB", "agent adds ≤ 20 %", "ms/p50",
		"agent.Pause (envd /snapshot/prepare, `runsc checkpoint`, `runsc delete`, records; the network is kept for the grace period) vs POST /snapshot/prepare + `runsc checkpoint` + `runsc delete -force` by hand; capsules have 512 MiB. Resume runs untimed between pauses.", false},
	{"pause, 256 MiB dirty", "AgentPause/dirty=256MiB", "RawRunscPause/dirty=256MiB", "agent adds ≤ 20 %", "ms/p50",
		"As above, with 256 MiB of /dev/urandom data in a tmpfs inside the capsule, so the checkpoint holds 256 MiB of non-zero pages.", false},
	{"resume, idle capsule", "AgentResume/dirty=0MiB", "RawRunscResume/dirty=0MiB", "agent adds ≤ 20 %", "ms/p50",
		"agent.Resume (the kept network, `runsc restore -detach`, /health, /init; the used snapshot is removed after answering) vs re-adding the address to the namespace, `runsc restore -detach`, /health and POST /init; the raw side removes its checkpoint untimed. Pause runs untimed between resumes.", false},
	{"resume, 256 MiB dirty", "AgentResume/dirty=256MiB", "RawRunscResume/dirty=256MiB", "agent adds ≤ 20 %", "ms/p50",
		"As above, with the 256 MiB of dirty tmpfs pages.", false},
	{"idle capsule host memory", "AgentIdleMemory", "RawRunscIdleMemory", "≤ 40 MiB per capsule", "MiB/capsule",
		"5 idle capsules (256 MiB limit) started by the agent vs by raw runsc, 3 s after start: the summed PSS (/proc/<pid>/smaps_rollup) of every process in each capsule's cgroup (runsc sandbox, gofer, systrap stubs), per capsule, averaged over samples 100 ms apart.", false},
	{"idle capsule cgroup charge", "AgentIdleMemory", "RawRunscIdleMemory", "none (what the cgroup limit sees)", "cgroup-MiB/capsule",
		"The same capsules: the memory their cgroups are charged (memory.usage_in_bytes or memory.current: anonymous and tmpfs pages plus page cache), per capsule.", false},
	{"idle CPU per capsule", "AgentDensity", "RawRunscDensity", "≤ 1.5× raw runsc", "cpu-%/capsule",
		"N idle capsules (minimal image, 128 MiB; N = WRENN_DENSITY_N, 10 by default) started by the agent vs N raw runsc sandboxes running `sleep` (same image, flags and limits, a namespace each), measured after a settle time (WRENN_DENSITY_SETTLE, 60 s) over the benchmark's loop (one WRENN_DENSITY_WINDOW, 10 s, per iteration): the CPU time of every thread of every process in the capsules' cgroups (/proc/<pid>/task/<tid>/schedstat), plus for the agent side the CPU time of the benchmark process, which hosts the agent; per capsule, in % of one core.", false},
	{"idle memory per capsule, N alive", "AgentDensity", "RawRunscDensity", "≥ 200 capsules fit 24 GiB (≤ 100 MiB each)", "MiB/capsule",
		"The same capsules after the CPU windows: the summed PSS of the processes in each capsule's cgroup, per capsule.", false},
	{"exec p50, N alive vs 1 alive", "AgentDensity", "AgentDensity", "≤ 1.5× the 1-capsule figure", "execN-ms/p50:exec1-ms/p50",
		"`true` through the agent's envd client (Process.Start until its end event), 40 times: in the first capsule while it is the only one, and round robin over all N after the CPU windows.", false},
	{"creates per second, 4 callers", "AgentCreateParallel", "RawRunscCreateParallel", "agent ≥ 80 % of raw", "creates/s",
		"4 goroutines each doing create-until-ready then destroy, back to back: agent.Create + agent.Destroy vs bundle + `runsc run -detach` + /health + POST /init + `runsc delete -force` in one pre-made namespace per caller. Creates completed per second of wall time.", false},
}

// unit describes how a custom metric is shown and which way is better.
type unit struct {
	show         string
	higherBetter bool
}

var units = map[string]unit{
	"ms/p50":               {"ms", false},
	"MiB/capsule":          {"MiB", false},
	"cgroup-MiB/capsule":   {"MiB", false},
	"creates/s":            {"creates/s", true},
	"cpu-%/capsule":        {"% of a core", false},
	"exec1-ms/p50":         {"ms", false},
	"execN-ms/p50":         {"ms", false},
	"direct-ms/p50":        {"ms", false},
	"pause-ms/p50":         {"ms", false},
	"direct-pause-ms/p50":  {"ms", false},
	"resume-ms/p50":        {"ms", false},
	"direct-resume-ms/p50": {"ms", false},
	"pooled-ms/p50":        {"ms", false},
	"unpooled-ms/p50":      {"ms", false},
	"raw-restore-ms/p50":   {"ms", false},
	"pooled-exec-ms/p50":   {"ms", false},
	"unpooled-exec-ms/p50": {"ms", false},
	"fork-ms/p50":          {"ms", false},
	"create4-ms/p50":       {"ms", false},
}

type result struct {
	pkg    string
	name   string
	ns     []float64
	mbs    []float64
	custom map[string][]float64 // by unit, b.ReportMetric values
	rest   string
}

var line = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)$`)

func parse(r io.Reader) ([]*result, error) {
	byName := map[string]*result{}
	var order []*result
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		t := sc.Text()
		if strings.HasPrefix(t, "pkg: ") {
			pkg = strings.TrimPrefix(t, "pkg: ")
			continue
		}
		m := line.FindStringSubmatch(t)
		if m == nil {
			continue
		}
		res := byName[m[1]]
		if res == nil {
			res = &result{pkg: pkg, name: m[1], custom: map[string][]float64{}}
			byName[m[1]] = res
			order = append(order, res)
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		res.ns = append(res.ns, ns)
		fields := strings.Fields(m[3])
		var rest []string
		for i := 0; i+1 < len(fields); i += 2 {
			v, unit := fields[i], fields[i+1]
			if unit == "MB/s" {
				f, _ := strconv.ParseFloat(v, 64)
				res.mbs = append(res.mbs, f)
				continue
			}
			if _, ok := units[unit]; ok {
				f, _ := strconv.ParseFloat(v, 64)
				res.custom[unit] = append(res.custom[unit], f)
			}
			rest = append(rest, v+" "+unit)
		}
		res.rest = strings.Join(rest, ", ")
	}
	return order, sc.Err()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func dur(ns float64) string {
	return time.Duration(ns).Round(time.Microsecond / 10).String()
}

func find(rs []*result, name string) *result {
	for _, r := range rs {
		if r.name == name || strings.HasSuffix(r.name, "/"+name) {
			return r
		}
	}
	return nil
}

// num formats a custom metric value with its unit.
func num(v float64, show string) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, show)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, show)
	case v < 1:
		return fmt.Sprintf("%.3g %s", v, show)
	}
	return fmt.Sprintf("%.2f %s", v, show)
}

// compare describes a against baseline b: the difference and its share of
// b where lower is better, the ratio where higher is.
func compare(a, b float64, u unit) string {
	if b == 0 {
		return "n/a"
	}
	if u.higherBetter {
		return fmt.Sprintf("%.0f %% of baseline", a/b*100)
	}
	sign := "+"
	if a < b {
		sign = "−"
	}
	d := a - b
	if d < 0 {
		d = -d
	}
	return fmt.Sprintf("%s%s (%s%.0f %%)", sign, num(d, u.show), sign, d/b*100)
}

// ratioOf describes a as a multiple of baseline b.
func ratioOf(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f× baseline", a/b)
}

// Markers around the hand-written part of the report, which a new report
// keeps as it is.
const (
	keepStart = "<!-- benchreport: hand-written, kept as is -->"
	keepEnd   = "<!-- benchreport: end of hand-written -->"
)

// kept returns the hand-written part of an earlier report, markers
// included, or "".
func kept(old string) string {
	i := strings.Index(old, keepStart)
	if i < 0 {
		return ""
	}
	j := strings.Index(old[i:], keepEnd)
	if j < 0 {
		return ""
	}
	return old[i : i+j+len(keepEnd)]
}

// cpuModels returns the distinct "cpu:" lines of go test output.
func cpuModels(raw string) string {
	var out []string
	for l := range strings.Lines(raw) {
		if m, ok := strings.CutPrefix(l, "cpu: "); ok {
			if m = strings.TrimSpace(m); !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return strings.Join(out, "; ")
}

// render writes the report; machine describes the host (cores, memory) and
// keep is the hand-written part carried over from the previous report.
func render(w io.Writer, rs []*result, raw, machine, keep string) {
	fmt.Fprintf(w, "# Benchmarks\n\nGenerated by `make bench` (`tools/benchreport`) on %s. Each row is the median of\n", time.Now().UTC().Format("2006-01-02"))
	if cpu := cpuModels(raw); cpu != "" {
		machine = cpu + ", " + machine
	}
	fmt.Fprintf(w, "the runs in one `go test -bench` invocation; every Wrenn operation is measured in the same run as\nits raw baseline on the same machine (%s).\n\n", machine)
	fmt.Fprintf(w, "## Side by side\n\n| operation | Wrenn | baseline | difference | target |\n|---|---|---|---|---|\n")
	for _, c := range comparisons {
		a, b := find(rs, c.wrenn), find(rs, c.baseline)
		if a == nil || b == nil {
			fmt.Fprintf(w, "| %s | not measured | | | %s |\n", c.what, c.target)
			continue
		}
		// "wrenn:baseline" names two metrics of one benchmark (both sides measured in one loop).
		metric, baseMetric, paired := strings.Cut(c.metric, ":")
		if !paired {
			baseMetric = metric
		}
		if u, ok := units[metric]; ok {
			if len(a.custom[metric]) == 0 || len(b.custom[baseMetric]) == 0 {
				fmt.Fprintf(w, "| %s | not measured | | | %s |\n", c.what, c.target)
				continue
			}
			am, bm := median(a.custom[metric]), median(b.custom[baseMetric])
			diff := compare(am, bm, u)
			if c.ratio {
				diff = ratioOf(am, bm)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", c.what, num(am, u.show), num(bm, u.show), diff, c.target)
			continue
		}
		switch c.metric {
		case "MB/s":
			am, bm := median(a.mbs), median(b.mbs)
			ratio := 0.0
			if bm > 0 {
				ratio = am / bm * 100
			}
			fmt.Fprintf(w, "| %s | %.0f MB/s | %.0f MB/s | %.0f %% of baseline | %s |\n", c.what, am, bm, ratio, c.target)
		default:
			an, bn := median(a.ns), median(b.ns)
			fmt.Fprintf(w, "| %s | %s | %s | +%s | %s |\n", c.what, dur(an), dur(bn), dur(an-bn), c.target)
		}
	}
	fmt.Fprintf(w, "\nHow each pair is measured:\n\n")
	for _, c := range comparisons {
		fmt.Fprintf(w, "- **%s**: %s\n", c.what, c.method)
	}
	if keep != "" {
		fmt.Fprintf(w, "\n%s\n", keep)
	}
	fmt.Fprintf(w, "\n## All benchmarks\n\n| package | benchmark | time/op | throughput | other |\n|---|---|---|---|---|\n")
	for _, r := range rs {
		tp := ""
		if len(r.mbs) > 0 {
			tp = fmt.Sprintf("%.0f MB/s", median(r.mbs))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", strings.TrimPrefix(r.pkg, "github.com/wrenn/wrenn/"), r.name, dur(median(r.ns)), tp, r.rest)
	}
	fmt.Fprintf(w, "\n## Raw output\n\n```\n%s```\n", raw)
}

// machine describes this host: cores and memory.
func machine() string {
	desc := fmt.Sprintf("%d cores", runtime.NumCPU())
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return desc
	}
	for l := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				desc += fmt.Sprintf(", %.0f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return desc
}

func main() {
	in := flag.String("in", "", "go test -bench output")
	out := flag.String("out", "docs/benchmarks.md", "markdown file to write")
	flag.Parse()
	data, err := os.ReadFile(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	rs, err := parse(strings.NewReader(string(data)))
	if err != nil || len(rs) == 0 {
		fmt.Fprintln(os.Stderr, "benchreport: no benchmark results in", *in, err)
		os.Exit(1)
	}
	old, _ := os.ReadFile(*out) // a first report has nothing to keep
	var sb strings.Builder
	render(&sb, rs, string(data), machine(), kept(string(old)))
	sb.WriteString(keptTail(string(old)))
	if err := os.WriteFile(*out, []byte(sb.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// keepMarker starts the part of the report that is not generated (measurements made by other tools,
// such as the E2B SDK run of tests/e2bjs): benchreport keeps it, from the marker to the end.
const keepMarker = "<!-- benchreport keeps what follows -->"

// keptTail returns the part of an earlier report from keepMarker on ("" without one), preceded by a
// blank line.
func keptTail(old string) string {
	i := strings.Index(old, keepMarker)
	if i < 0 {
		return ""
	}
	return "\n" + old[i:]
}
