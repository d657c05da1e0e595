package builder_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// BenchmarkBuildStep compares the builder's per-step cost with the same command sent as a plain exec to
// a capsule of the same base template: a skip_pre_post build of 10 `RUN true` steps, its summed step
// times (ms/step) and its wall time from creation to success (build-ms), next to exec round trips
// (exec-ms).
func BenchmarkBuildStep(b *testing.B) {
	p := newPlatform(b)
	admin := cptest.Bearer(p.Admin)
	res := cptest.Call(b, p.URL(), "POST", "/v1/admin/capsules", admin, map[string]any{"template": "base"})
	if res.Status != 201 {
		b.Fatalf("create capsule: %d %s", res.Status, res.Body)
	}
	var c struct{ ID string }
	res.JSON(b, &c)
	b.Cleanup(func() { cptest.Call(b, p.URL(), "DELETE", "/v1/admin/capsules/"+c.ID, admin, nil) })
	const steps = 10
	recipe := make([]string, steps)
	for i := range recipe {
		recipe[i] = "RUN true"
	}
	var execTotal, stepTotal, buildTotal time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		for range steps {
			r := cptest.Call(b, p.URL(), "POST", "/v1/admin/capsules/"+c.ID+"/exec", admin,
				map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "true"}})
			if r.Status != 200 {
				b.Fatalf("exec: %d %s", r.Status, r.Body)
			}
		}
		execTotal += time.Since(start)

		start = time.Now()
		res := cptest.Call(b, p.URL(), "POST", "/v1/admin/builds", admin,
			map[string]any{"name": fmt.Sprintf("bench-%d", i), "skip_pre_post": true, "recipe": recipe})
		if res.Status != 201 {
			b.Fatalf("create build: %d %s", res.Status, res.Body)
		}
		var bl build
		res.JSON(b, &bl)
		platform.Eventually(b, buildTimeout, "bench build", func() error {
			res := cptest.Call(b, p.URL(), "GET", "/v1/admin/builds/"+bl.ID, admin, nil)
			res.JSON(b, &bl)
			if bl.Status == "failed" || bl.Status == "cancelled" {
				b.Fatalf("bench build %s: %s", bl.Status, bl.Error)
			}
			if bl.Status != "success" {
				return fmt.Errorf("status %s", bl.Status)
			}
			return nil
		})
		buildTotal += time.Since(start)
		for _, l := range bl.Logs {
			stepTotal += time.Duration(l.ElapsedMS) * time.Millisecond
		}
		cptest.Call(b, p.URL(), "DELETE", "/v1/admin/templates/"+bl.Name, admin, nil)
	}
	n := float64(b.N * steps)
	b.ReportMetric(float64(execTotal.Milliseconds())/n, "exec-ms/step")
	b.ReportMetric(float64(stepTotal.Milliseconds())/n, "build-ms/step")
	b.ReportMetric(float64(buildTotal.Milliseconds())/float64(b.N), "build-ms")
}
