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
`

func TestParseAndRender(t *testing.T) {
	rs, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("got %d results, want 4", len(rs))
	}
	exec := find(rs, "ExecTrue")
	if got := median(exec.ns); got != 2500000 {
		t.Errorf("median ExecTrue = %v, want 2500000", got)
	}
	if exec.pkg != "github.com/wrenn/wrenn/internal/envd/process" {
		t.Errorf("pkg = %q", exec.pkg)
	}
	var sb strings.Builder
	render(&sb, rs, sample)
	out := sb.String()
	for _, want := range []string{
		"| exec `true` round trip | 2.5ms | 1ms | +1.5ms |",
		"| file upload | 700 MB/s | 1000 MB/s | 70 % of baseline |",
		"| file download | not measured |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
