package cp_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/pki"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// BenchmarkControlPlane measures the control plane's overhead: each operation through the REST API
// (wrenn-cp → mutual TLS → wrenn-agent) next to the same operation sent straight to the agent over
// the same mutual-TLS transport with a certificate of the same CA, alternating in one loop.
// tools/benchreport compares each control-plane metric with its direct-… twin.
func BenchmarkControlPlane(b *testing.B) {
	p := platform.New(b, 1, "--reconcile-interval", "1h")
	n := p.AddHost(b, false)
	key := cptest.Key(p.Key)
	direct := directAgent(b, p, n)
	ctx := context.Background()

	// Each operation runs through the control plane and directly on the agent alternately in one
	// loop, so both sides see the same machine; "ms/p50" is the control plane's median and
	// "direct-ms/p50" the agent's.
	createDirect := func() string {
		_, id := ids.Capsule.New()
		if _, err := direct.CreateSandbox(ctx, connect.NewRequest(&hav1.CreateSandboxRequest{
			SandboxId: id, Vcpus: 1, MemoryMb: 256, DiskSizeMb: 5120, TemplateId: "minimal",
			TeamId: "00000000-0000-0000-0000-000000000000", DefaultUser: "root", AllowInternet: true,
		})); err != nil {
			b.Fatalf("create: %v", err)
		}
		return id
	}
	destroyDirect := func(id string) {
		if _, err := direct.DestroySandbox(ctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id})); err != nil {
			b.Fatalf("destroy: %v", err)
		}
	}
	b.Run("CreateExec", func(b *testing.B) {
		var cp, dir latencies
		for i := 0; b.Loop(); i++ {
			var id, did string
			viaCP := func() {
				cp.time(func() {
					id = p.CreateCapsule(b, p.URL(), key).ID
					execEcho(b, p.URL(), key, id, "x")
				})
			}
			viaAgent := func() {
				dir.time(func() {
					did = createDirect()
					directExec(b, direct, did)
				})
			}
			alternate(i, viaCP, viaAgent)
			b.StopTimer()
			destroyDirect(did)
			cptest.Call(b, p.URL(), "DELETE", "/v1/capsules/"+id, key, nil)
			b.StartTimer()
		}
		report(b, cp, dir)
	})

	// Exec, pause and resume act on one capsule from both sides, so the two sides measure the same
	// capsule. The benchmark's control plane reconciles once an hour: it must not notice the direct
	// resumes of a capsule it has recorded paused.
	c := p.CreateCapsule(b, p.URL(), key)
	b.Cleanup(func() { cptest.Call(b, p.URL(), "DELETE", "/v1/capsules/"+c.ID, key, nil) })
	b.Run("Exec", func(b *testing.B) {
		var cp, dir latencies
		for i := 0; b.Loop(); i++ {
			alternate(i,
				func() { cp.time(func() { execEcho(b, p.URL(), key, c.ID, "x") }) },
				func() { dir.time(func() { directExec(b, direct, c.ID) }) })
		}
		report(b, cp, dir)
	})
	pause := func() {
		if _, err := direct.FlushSandboxMetrics(ctx, connect.NewRequest(&hav1.FlushSandboxMetricsRequest{SandboxId: c.ID})); err != nil {
			b.Fatalf("flush metrics: %v", err)
		}
		if _, err := direct.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: c.ID})); err != nil {
			b.Fatalf("pause: %v", err)
		}
	}
	resume := func() {
		if _, err := direct.ResumeSandbox(ctx, connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: c.ID, DefaultUser: "root"})); err != nil {
			b.Fatalf("resume: %v", err)
		}
	}
	b.Run("PauseResume", func(b *testing.B) {
		var cpPause, dirPause, cpResume, dirResume latencies
		for b.Loop() {
			// Every pause follows a resume and every resume a pause, on both sides.
			cpPause.time(func() { cpCall(b, p, key, "/v1/capsules/"+c.ID+"/pause", 200) })
			dirResume.time(resume)
			dirPause.time(pause)
			cpResume.time(func() { cpCall(b, p, key, "/v1/capsules/"+c.ID+"/resume", 200) })
		}
		b.ReportMetric(cpPause.p50(), "pause-ms/p50")
		b.ReportMetric(dirPause.p50(), "direct-pause-ms/p50")
		b.ReportMetric(cpResume.p50(), "resume-ms/p50")
		b.ReportMetric(dirResume.p50(), "direct-resume-ms/p50")
	})
}

// alternate runs a then b on even iterations and b then a on odd ones, so neither side always runs
// right after the other's work (an agent finishes some of it after answering).
func alternate(i int, a, b func()) {
	if i%2 == 0 {
		a()
		b()
		return
	}
	b()
	a()
}

// report adds the control plane's and the agent's medians to b.
func report(b *testing.B, cp, direct latencies) {
	b.ReportMetric(cp.p50(), "ms/p50")
	b.ReportMetric(direct.p50(), "direct-ms/p50")
}

func cpCall(b testing.TB, p *platform.Platform, cred cptest.Cred, path string, want int) {
	b.Helper()
	if res := cptest.Call(b, p.URL(), "POST", path, cred, nil); res.Status != want {
		b.Fatalf("POST %s: %d %s", path, res.Status, res.Body)
	}
}

func directExec(b testing.TB, c hostagentv1connect.HostAgentServiceClient, id string) {
	b.Helper()
	res, err := c.Exec(context.Background(), connect.NewRequest(&hav1.ExecRequest{SandboxId: id, Cmd: "/bin/sh", Args: []string{"-c", "echo x"}, TimeoutSec: 30}))
	if err != nil || string(res.Msg.Stdout) != "x\n" {
		b.Fatalf("exec: %v", err)
	}
}

// directAgent is a client of n's agent over mutual TLS with a client certificate from the platform's
// internal CA, exactly as the control plane dials it.
func directAgent(b testing.TB, p *platform.Platform, n *platform.Node) hostagentv1connect.HostAgentServiceClient {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, p.DSN)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	row, err := st.GetInternalCA(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := pki.LoadCA([]byte(row.CertPEM), []byte(row.KeyPEM))
	if err != nil {
		b.Fatal(err)
	}
	kp, err := ca.IssueClient()
	if err != nil {
		b.Fatal(err)
	}
	cert, err := pki.NewCertificate(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := pki.ControlPlaneTLSConfig(cert, ca.CertPEM(), n.ID)
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	return hostagentv1connect.NewHostAgentServiceClient(&http.Client{Transport: tr}, "https://"+n.Agent.Addr)
}

type latencies []time.Duration

func (l *latencies) time(f func()) {
	start := time.Now()
	f()
	*l = append(*l, time.Since(start))
}

// p50 is the median in milliseconds.
func (l latencies) p50() float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[len(s)/2].Microseconds()) / 1000
}
