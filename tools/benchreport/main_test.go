package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
pkg: github.com/wrenn/wrenn/internal/envd/process
BenchmarkExecTrue-2     	     500	   2000000 ns/op	    1000 B/op	      10 allocs/op
BenchmarkExecTrue-2     	     500	   3000000 ns/op	    1000 B/op	      10 allocs/op
BenchmarkExecTrue-2     	     500	   2500000 ns/op	    1000 B/op	      10 allocs/op
BenchmarkForkExecTrue-2 	    1000	   1000000 ns/op
pkg: github.com/wrenn/wrenn/internal/envd/files
BenchmarkUpload-2       	      10	 100000000 ns/op	 700.00 MB/s
BenchmarkLocalCopy-2    	      10	  70000000 ns/op	1000.00 MB/s
pkg: github.com/wrenn/wrenn/tests/agentbench
BenchmarkAgentCreate-2      	       5	 215600348 ns/op	       216.4 ms/p50
BenchmarkRawRunscCreate-2   	       5	 107715274 ns/op	       110.1 ms/p50
BenchmarkAgentCreate-2      	       5	 215600348 ns/op	       200.0 ms/p50
BenchmarkRawRunscCreate-2   	       5	 107715274 ns/op	       100.0 ms/p50
BenchmarkAgentCreate-2      	       5	 215600348 ns/op	       240.0 ms/p50
BenchmarkRawRunscCreate-2   	       5	 107715274 ns/op	       120.0 ms/p50
BenchmarkAgentPause/dirty=0MiB-2         	       5	 127022717 ns/op	       90.0 ms/p50
BenchmarkRawRunscPause/dirty=0MiB-2      	       5	  47896798 ns/op	       100.0 ms/p50
BenchmarkAgentIdleMemory-2              	       5	 104551222 ns/op	        29.83 MiB/capsule	        18.14 cgroup-MiB/capsule
BenchmarkRawRunscIdleMemory-2           	       5	 104327201 ns/op	        29.81 MiB/capsule	        17.88 cgroup-MiB/capsule
BenchmarkAgentCreateParallel-2          	       5	 451938622 ns/op	         8.000 creates/s
BenchmarkRawRunscCreateParallel-2       	       5	 285752730 ns/op	        10.00 creates/s
`

func TestParseAndRender(t *testing.T) {
	rs, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 12 {
		t.Fatalf("got %d results, want 12", len(rs))
	}
	if got := median(find(rs, "AgentCreate").custom["ms/p50"]); got != 216.4 {
		t.Errorf("median AgentCreate ms/p50 = %v, want 216.4", got)
	}
	exec := find(rs, "ExecTrue")
	if got := median(exec.ns); got != 2500000 {
		t.Errorf("median ExecTrue = %v, want 2500000", got)
	}
	if exec.pkg != "github.com/wrenn/wrenn/internal/envd/process" {
		t.Errorf("pkg = %q", exec.pkg)
	}
	var sb strings.Builder
	render(&sb, rs, sample, "2 cores, 24 GiB", "")
	out := sb.String()
	for _, want := range []string{
		"| exec `true` round trip | 2.5ms | 1ms | +1.5ms |",
		"| file upload | 700 MB/s | 1000 MB/s | 70 % of baseline |",
		"| file download | not measured |",
		"| capsule create from image | 216 ms | 110 ms | +106 ms (+97 %) |",
		"| pause, idle capsule | 90.0 ms | 100 ms | −10.0 ms (−10 %) |",
		"| pause, 256 MiB dirty | not measured |",
		"| idle capsule host memory | 29.8 MiB | 29.8 MiB | +0.02 MiB (+0 %) |",
		"| idle capsule cgroup charge | 18.1 MiB | 17.9 MiB | +0.26 MiB (+1 %) |",
		"| creates per second, 4 callers | 8.00 creates/s | 10.0 creates/s | 80 % of baseline |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestKeptTail(t *testing.T) {
	if got := keptTail("# Benchmarks\n\nold tables\n"); got != "" {
		t.Errorf("no marker: kept %q", got)
	}
	old := "# Benchmarks\n\nold\n\n" + keepMarker + "\n\n## E2B\n\nrows\n"
	if got, want := keptTail(old), "\n"+keepMarker+"\n\n## E2B\n\nrows\n"; got != want {
		t.Errorf("kept %q, want %q", got, want)
	}
}

func TestKeepHandWritten(t *testing.T) {
	hand := keepStart + "\n## Notes\n\nmeasured by hand\n" + keepEnd
	old := "# Benchmarks\n\nold table\n\n" + hand + "\n\n## All benchmarks\n"
	if got := kept(old); got != hand {
		t.Fatalf("kept = %q, want %q", got, hand)
	}
	if kept("# Benchmarks\n"+keepStart+"\nno end") != "" || kept("") != "" {
		t.Fatal("kept returned something without both markers")
	}
	rs, err := parse(strings.NewReader("cpu: Some CPU\n" + sample))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	render(&sb, rs, "cpu: Some CPU\n"+sample, "2 cores, 24 GiB", hand)
	out := sb.String()
	if !strings.Contains(out, "same machine (Some CPU, 2 cores, 24 GiB)") {
		t.Errorf("no machine line in\n%s", out)
	}
	i, j := strings.Index(out, hand), strings.Index(out, "## All benchmarks")
	if i < 0 || j < 0 || i > j {
		t.Errorf("hand-written part missing or after the benchmark table:\n%s", out)
	}
	if kept(out) != hand {
		t.Error("the new report does not keep the hand-written part for the next one")
	}
}

func TestDensityRows(t *testing.T) {
	const density = `pkg: github.com/wrenn/wrenn/tests/agentbench
BenchmarkAgentDensity-2      	       1	2003397026 ns/op	        37.66 MiB/capsule	         0.09843 agent-cpu-%/capsule	         3.000 capsules	        20.31 cgroup-MiB/capsule	         0.1200 cpu-%/capsule	        80.00 exec1-ms/p50	        100.0 execN-ms/p50	         0.02 sandbox-cpu-%/capsule
BenchmarkRawRunscDensity-2   	       1	2003963526 ns/op	        20.29 MiB/capsule	         3.000 capsules	        15.16 cgroup-MiB/capsule	         0.08000 cpu-%/capsule
`
	rs, err := parse(strings.NewReader(density))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	render(&sb, rs, density, "2 cores", "")
	out := sb.String()
	for _, want := range []string{
		"| idle CPU per capsule | 0.12 % of a core | 0.08 % of a core | +0.04 % of a core (+50 %) |",
		"| exec p50, N alive vs 1 alive | 100 ms | 80.0 ms | +20.0 ms (+25 %) |",
		"| idle memory per capsule, N alive | 37.7 MiB | 20.3 MiB |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestWarmStartRatios(t *testing.T) {
	const warm = `pkg: github.com/wrenn/wrenn/tests/cp
BenchmarkWarmStart/Create-2         	       5	9000000000 ns/op	       800.0 pause-ms/p50	        50.00 pooled-exec-ms/p50	         0.0500 pooled-exec/unpooled-exec	        40.00 pooled-ms/p50	         0.2000 pooled/resume	       600.0 raw-restore-ms/p50	       200.0 resume-ms/p50	      1000 unpooled-exec-ms/p50	       900.0 unpooled-ms/p50
BenchmarkWarmStart/Fork4-2          	       5	9000000000 ns/op	      1500 create4-ms/p50	       1200 fork-ms/p50
`
	rs, err := parse(strings.NewReader(warm))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	render(&sb, rs, warm, "2 cores", "")
	out := sb.String()
	for _, want := range []string{
		"| API create from `base`, warm pool vs the same capsule's resume | 40.0 ms | 200 ms | 0.20× baseline | pooled ≤ 0.25× the resume |",
		"| API create from `base`, warm pool vs none | 40.0 ms | 900 ms | 0.04× baseline |",
		"| API create from `base`, warm pool vs raw restore | 40.0 ms | 600 ms | 0.07× baseline |",
		"| API create → first exec result, warm pool vs none | 50.0 ms | 1000 ms | 0.05× baseline |",
		"| API fork into 4 vs 4 creates from a snapshot | 1200 ms | 1500 ms | 0.80× baseline |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}
