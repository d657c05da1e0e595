package hostapi

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/ports"
	"github.com/wrenn/wrenn/internal/envd/ports/portstest"
)

// TestPrepareInitCycles pauses and resumes 500 times through the HTTP
// handler (/snapshot/prepare, then /init) with a real port subsystem in a
// namespace of its own, loopback listeners opening and closing in between.
func TestPrepareInitCycles(t *testing.T) {
	n, child := portstest.RunTest(t, 3*time.Minute)
	if !child {
		return
	}
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })

	p := ports.New(ports.Config{Interval: 5 * time.Millisecond})
	t.Cleanup(p.Stop)
	h := New(Config{Defaults: defaults.New(nil), Ports: p, Version: "0.6.4"})
	post := func(path string) {
		if w := do(h, http.MethodPost, path, ""); w.Code != http.StatusNoContent {
			t.Errorf("POST %s: %d %s", path, w.Code, w.Body)
		}
	}
	c := &portstest.Cycler{
		Ext:       n.Addr,
		Start:     func() { post("/init") },
		Stop:      func() { post("/snapshot/prepare") },
		Forwarded: p.Forwarded,
	}
	c.Run(t, 500)
	if p.Running() {
		t.Fatal("port subsystem running after the final /snapshot/prepare")
	}
}
