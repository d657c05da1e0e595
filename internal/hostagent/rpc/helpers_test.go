package rpc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// Capsule ids the fake knows.
const (
	runningID = "cl-0k4xq2m9d8e7r6t5y4u3i2o1p"
	pausedID  = "cl-00000000000000000000000p1"
	unknownID = "cl-zzzzzzzzzzzzzzzzzzzzzzzzz"
)

// fakeAgent is an Agent whose one running capsule is a real envd on
// loopback. It records every call.
type fakeAgent struct {
	envdAddr    string
	defaultUser string

	mu    sync.Mutex
	calls []string
	args  []any

	envdCalls atomic.Int64
	doneCalls atomic.Int64

	// Results the lifecycle methods hand back.
	err        error
	info       capsules.Info
	list       []capsules.Info
	autoPaused []string
	size       int64
	points     []capsules.MetricPoint
	tiers      [3][]capsules.MetricPoint
}

func (f *fakeAgent) record(call string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	f.args = append(f.args, args)
}

func (f *fakeAgent) recorded() ([]string, []any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...), append([]any(nil), f.args...)
}

func (f *fakeAgent) Create(_ context.Context, p capsules.CreateParams) (capsules.Info, error) {
	f.record("Create", p)
	return f.info, f.err
}

func (f *fakeAgent) Resume(_ context.Context, p capsules.ResumeParams) (capsules.Info, error) {
	f.record("Resume", p)
	return f.info, f.err
}

func (f *fakeAgent) Pause(_ context.Context, id string) error {
	f.record("Pause", id)
	return f.err
}

func (f *fakeAgent) Destroy(_ context.Context, id string) error {
	f.record("Destroy", id)
	return f.err
}

func (f *fakeAgent) Ping(_ context.Context, id string) error {
	f.record("Ping", id)
	return f.err
}

func (f *fakeAgent) List(context.Context) ([]capsules.Info, []string, error) {
	f.record("List")
	return f.list, f.autoPaused, f.err
}

func (f *fakeAgent) Envd(_ context.Context, id string) (*envdclient.Client, capsules.Info, func(), error) {
	f.record("Envd", id)
	switch id {
	case runningID:
	case pausedID:
		return nil, capsules.Info{}, nil, fmt.Errorf("%w: sandbox %s is paused", capsules.ErrState, id)
	default:
		return nil, capsules.Info{}, nil, fmt.Errorf("%w: %s", capsules.ErrNotFound, id)
	}
	f.envdCalls.Add(1)
	var once sync.Once
	done := func() { once.Do(func() { f.doneCalls.Add(1) }) }
	info := capsules.Info{ID: id, Status: capsules.StatusRunning, DefaultUser: f.defaultUser, HostIP: f.envdAddr}
	return envdclient.New(f.envdAddr), info, done, nil
}

func (f *fakeAgent) Snapshot(_ context.Context, id, teamID, templateID string) (int64, error) {
	f.record("Snapshot", id, teamID, templateID)
	return f.size, f.err
}

func (f *fakeAgent) Flatten(_ context.Context, id, teamID, templateID string) (int64, error) {
	f.record("Flatten", id, teamID, templateID)
	return f.size, f.err
}

func (f *fakeAgent) DeleteTemplate(_ context.Context, teamID, templateID string) error {
	f.record("DeleteTemplate", teamID, templateID)
	return f.err
}

func (f *fakeAgent) Fork(_ context.Context, id string, targets []capsules.ForkTarget) ([]capsules.Info, error) {
	f.record("Fork", id, targets)
	if f.err != nil {
		return nil, f.err
	}
	out := make([]capsules.Info, len(targets))
	for i, t := range targets {
		out[i] = capsules.Info{ID: t.ID, Status: capsules.StatusRunning}
	}
	return out, nil
}

func (f *fakeAgent) SetNamedPool(_ context.Context, s capsules.PoolSpec) error {
	f.record("SetNamedPool", s)
	return f.err
}

func (f *fakeAgent) Pools() []capsules.PoolStat { return nil }

func (f *fakeAgent) Metrics(_ context.Context, id string, r capsules.MetricsRange) ([]capsules.MetricPoint, error) {
	f.record("Metrics", id, r)
	return f.points, f.err
}

func (f *fakeAgent) FlushMetrics(_ context.Context, id string) ([3][]capsules.MetricPoint, error) {
	f.record("FlushMetrics", id)
	return f.tiers, f.err
}

func (f *fakeAgent) Terminate(context.Context) error {
	f.record("Terminate")
	return f.err
}

var _ Agent = (*fakeAgent)(nil)

// harness is the API served over HTTP/2 + TLS in front of a fake agent.
type harness struct {
	fake   *fakeAgent
	client hostagentv1connect.HostAgentServiceClient
	envd   *testutil.Envd
}

// newHarness serves the API for a fake agent. With envd, the fake's running
// capsule is a real envd on loopback (root needed). When the test ends it
// checks that every Envd call was matched by done and that no goroutine
// leaked.
func newHarness(t *testing.T, withEnvd bool) *harness {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		envdclient.CloseIdle()
		goleak.VerifyNone(t, ignore)
	})
	h := &harness{fake: &fakeAgent{envdAddr: "127.0.0.1:1"}}
	if withEnvd {
		testutil.Integration(t)
		h.envd = testutil.StartEnvd(t)
		h.fake.envdAddr = h.envd.Addr
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	mux := http.NewServeMux()
	mux.Handle(New(h.fake, log).Handler())
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	hc := srv.Client()
	t.Cleanup(func() {
		hc.CloseIdleConnections()
		srv.Close()
		// Handlers end with their streams; each must have released its capsule.
		deadline := time.Now().Add(30 * time.Second)
		for h.fake.doneCalls.Load() != h.fake.envdCalls.Load() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if e, d := h.fake.envdCalls.Load(), h.fake.doneCalls.Load(); e != d {
			t.Errorf("Envd called %d times, done called %d times", e, d)
		}
	})
	h.client = hostagentv1connect.NewHostAgentServiceClient(hc, srv.URL)
	return h
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v, got success", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("want %v, got %v: %v", code, got, err)
	}
}

// processes lists the capsule's processes by pid.
func (h *harness) processes(t *testing.T, exited bool) map[uint32]*v1.ProcessInfo {
	t.Helper()
	res, err := h.client.ListProcesses(ctxT(t, 10*time.Second), connect.NewRequest(&v1.ListProcessesRequest{
		SandboxId: runningID, IncludeExited: exited,
	}))
	if err != nil {
		t.Fatalf("list processes: %v", err)
	}
	out := map[uint32]*v1.ProcessInfo{}
	for _, p := range res.Msg.GetProcesses() {
		out[p.GetPid()] = p
	}
	return out
}

// waitGone waits until pid is no longer a running process of envd and no
// longer exists on the host.
func (h *harness) waitGone(t *testing.T, pid uint32, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		p, listed := h.processes(t, false)[pid]
		_, statErr := os.Stat(fmt.Sprintf("/proc/%d", pid))
		if !listed && os.IsNotExist(statErr) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("process %d still alive after %s (listed %v)", pid, limit, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid exists on the host (envd runs on the host, so
// capsule pids are host pids here).
func alive(pid uint32) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// outputBuf accumulates stream output read by another goroutine.
type outputBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *outputBuf) write(p []byte) {
	o.mu.Lock()
	o.b.Write(p)
	o.mu.Unlock()
}

func (o *outputBuf) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
