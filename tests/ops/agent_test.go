// Package ops_test checks the operational surface of the real binaries: the agent's /metrics, /health
// and /ready, its -on-shutdown modes, and the systemd units in deploy/systemd.
package ops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/hostagent/suspend"
	"github.com/wrenn/wrenn/internal/telemetry"
	"github.com/wrenn/wrenn/internal/telemetry/telemetrytest"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newID() string { return ids.Capsule.Format(uuid.New()) }

func create(t *testing.T, h *agenthost.Host, id string) {
	t.Helper()
	if _, err := h.API.CreateSandbox(ctxT(t, 2*time.Minute), connect.NewRequest(&hav1.CreateSandboxRequest{
		SandboxId: id, TemplateId: "minimal", MemoryMb: 256, DefaultEnv: map[string]string{"GREETING": "hello"},
	})); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

func exec1(t *testing.T, h *agenthost.Host, id, script string) string {
	t.Helper()
	res, err := h.API.Exec(ctxT(t, 30*time.Second), connect.NewRequest(&hav1.ExecRequest{SandboxId: id, Cmd: "/bin/sh", Args: []string{"-c", script}}))
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	if res.Msg.GetExitCode() != 0 {
		t.Fatalf("exec %q: exit %d: %s", script, res.Msg.GetExitCode(), res.Msg.GetStderr())
	}
	return strings.TrimSpace(string(res.Msg.GetStdout()))
}

func status(t *testing.T, h *agenthost.Host, id string) hav1.SandboxStatus {
	t.Helper()
	res, err := h.API.ListSandboxes(ctxT(t, 10*time.Second), connect.NewRequest(&hav1.ListSandboxesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range res.Msg.GetSandboxes() {
		if sb.GetSandboxId() == id {
			return sb.GetStatus()
		}
	}
	return hav1.SandboxStatus_SANDBOX_STATUS_UNSPECIFIED
}

func getReady(t *testing.T, base string) (int, telemetry.ReadyAnswer) {
	t.Helper()
	res, err := http.Get(base + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var a telemetry.ReadyAnswer
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		t.Fatalf("/ready: %v", err)
	}
	return res.StatusCode, a
}

// TestAgentMetrics runs lifecycle operations on a real agent and checks its series on the API
// listener and on -metrics-listen, and its /health and /ready.
func TestAgentMetrics(t *testing.T) {
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	h := agenthost.Start(t, agenthost.Options{Args: []string{"-metrics-listen", metricsAddr}})
	ctx := ctxT(t, 3*time.Minute)

	a, b := newID(), newID()
	create(t, h, a)
	create(t, h, b)
	if _, err := h.API.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: b})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.API.ResumeSandbox(ctx, connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: b})); err != nil {
		t.Fatal(err)
	}
	tpl := uuid.NewString()
	if _, err := h.API.CreateSnapshot(ctx, connect.NewRequest(&hav1.CreateSnapshotRequest{SandboxId: b, TeamId: "team-ops", TemplateId: tpl})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = h.API.DeleteSnapshot(context.Background(), connect.NewRequest(&hav1.DeleteSnapshotRequest{TeamId: "team-ops", TemplateId: tpl}))
	})
	if _, err := h.API.DestroySandbox(ctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: a})); err != nil {
		t.Fatal(err)
	}
	// Failures: pausing a capsule that does not exist, creating one twice.
	if _, err := h.API.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: newID()})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("pause of an unknown capsule: %v", err)
	}
	if _, err := h.API.CreateSandbox(ctx, connect.NewRequest(&hav1.CreateSandboxRequest{SandboxId: b, TemplateId: "minimal"})); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Fatalf("second create: %v", err)
	}
	// The snapshot left b paused: the gauges show one paused capsule, none running.
	if st := status(t, h, b); st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED && st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
		t.Fatalf("b after snapshot: %v", st)
	}
	bStatus := "paused"
	if status(t, h, b) == hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
		bStatus = "running"
	}

	eq, atLeast := telemetrytest.Eq, telemetrytest.AtLeast
	for _, base := range []string{"http://" + h.Addr, "http://" + metricsAddr} {
		s := telemetrytest.Scrape(t, base+"/metrics", "")
		s.Want(t, eq(1), "wrenn_agent_build_info")
		s.Want(t, eq(1), "wrenn_agent_capsules", "state", bStatus)
		s.Want(t, eq(1), "wrenn_agent_capsules") // all states summed
		s.Want(t, eq(0), "wrenn_agent_capsules", "state", "creating")
		dur := "wrenn_agent_operation_duration_seconds_count"
		s.Want(t, eq(3), dur, "operation", "create") // two created, one refused
		s.Want(t, eq(2), dur, "operation", "pause")
		s.Want(t, eq(1), dur, "operation", "resume")
		s.Want(t, eq(1), dur, "operation", "snapshot")
		s.Want(t, eq(1), dur, "operation", "destroy")
		s.Want(t, eq(0), dur, "operation", "flatten")
		s.Want(t, eq(1), "wrenn_agent_operation_errors_total", "operation", "pause", "kind", "not_found")
		s.Want(t, eq(1), "wrenn_agent_operation_errors_total", "operation", "create", "kind", "exists")
		s.Want(t, eq(float64(runtime.NumCPU())), "wrenn_agent_host_capacity_cpus")
		s.Want(t, atLeast(1<<28), "wrenn_agent_host_capacity_memory_bytes")
		s.Want(t, atLeast(1<<20), "wrenn_agent_host_capacity_disk_bytes")
		s.Want(t, atLeast(1), "wrenn_agent_host_disk_available_bytes")
		s.Want(t, atLeast(1<<20), "wrenn_agent_reserved_disk_bytes")
		s.Want(t, atLeast(1), "process_start_time_seconds")

		res, err := http.Get(base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s/health = %d", base, res.StatusCode)
		}
		code, ans := getReady(t, base)
		if code != http.StatusOK || ans.Checks["runtime"] != "ok" || ans.Checks["network"] != "ok" || ans.Checks["capsules"] != "ok" {
			t.Errorf("%s/ready = %d %+v", base, code, ans)
		}
	}
	// The metrics listener serves nothing else.
	res, err := http.Post("http://"+metricsAddr+"/hostagent.v1.HostAgentService/ListSandboxes", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("API call on the metrics listener = %d", res.StatusCode)
	}
	if _, err := h.API.DestroySandbox(ctx, connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: b})); err != nil {
		t.Fatal(err)
	}
}

// TestAgentPauseOnShutdown: with -on-shutdown=pause a SIGTERM pauses the running capsule (its id
// recorded in the data directory), the next start resumes it with its environment, and a background
// counter started through the API continues where it was.
func TestAgentPauseOnShutdown(t *testing.T) {
	h := agenthost.Start(t, agenthost.Options{Args: []string{"-on-shutdown", "pause"}})
	ctx := ctxT(t, 3*time.Minute)
	id, idle := newID(), newID()
	create(t, h, id)
	create(t, h, idle)
	if _, err := h.API.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: idle})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range []string{id, idle} {
			_, _ = h.API.DestroySandbox(context.Background(), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: c}))
		}
	})
	if _, err := h.API.StartBackground(ctx, connect.NewRequest(&hav1.StartBackgroundRequest{
		SandboxId: id, Cmd: "/bin/sh", Tag: "counter",
		Args: []string{"-c", `i=0; while true; do i=$((i+1)); echo $i > /tmp/count.tmp; mv /tmp/count.tmp /tmp/count; sleep 0.05; done`},
	})); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		n, err := strconv.Atoi(exec1(t, h, id, "cat /tmp/count"))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for count() < 20 {
		if time.Now().After(deadline) {
			t.Fatal("counter does not count")
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := count()

	h.Stop()
	if !strings.Contains(h.LogTail(), "capsules paused; they resume at the next start") {
		t.Fatalf("agent log does not report the pause:\n%s", h.LogTail())
	}
	recorded, err := suspend.Recorded(h.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recorded, []string{id}) {
		t.Fatalf("recorded ids = %v, want [%s] (the capsule paused by the user is not resumed)", recorded, id)
	}
	if procs := runscProcesses(id); len(procs) > 0 {
		t.Fatalf("capsule still running while the agent is stopped: %v", procs)
	}

	h.Start()
	deadline = time.Now().Add(60 * time.Second)
	for {
		code, ans := getReady(t, "http://"+h.Addr)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready after restart = %d %+v\n%s", code, ans, h.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := status(t, h, id); st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
		t.Fatalf("capsule after restart is %v\n%s", st, h.LogTail())
	}
	if st := status(t, h, idle); st != hav1.SandboxStatus_SANDBOX_STATUS_PAUSED {
		t.Errorf("capsule paused before the shutdown is %v after restart", st)
	}
	if _, err := os.Stat(filepath.Join(h.DataDir, suspend.FileName)); !os.IsNotExist(err) {
		t.Errorf("record still there after the resume: %v", err)
	}
	after := count()
	if after < before {
		t.Fatalf("counter went back from %d to %d: the process restarted", before, after)
	}
	deadline = time.Now().Add(60 * time.Second)
	for count() <= after {
		if time.Now().After(deadline) {
			t.Fatalf("counter stopped at %d after the resume", after)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if env := exec1(t, h, id, "echo $GREETING"); env != "hello" {
		t.Errorf("default env after resume: %q", env)
	}
	procs, err := h.API.ListProcesses(ctx, connect.NewRequest(&hav1.ListProcessesRequest{SandboxId: id}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(procs.Msg.GetProcesses(), func(p *hav1.ProcessInfo) bool { return p.GetTag() == "counter" }) {
		t.Errorf("counter process not listed after the resume: %v", procs.Msg.GetProcesses())
	}
	s := telemetrytest.Scrape(t, "http://"+h.Addr+"/metrics", "")
	s.Want(t, telemetrytest.Eq(1), "wrenn_agent_operation_duration_seconds_count", "operation", "resume")
	t.Logf("counter before stop %d, right after restart %d", before, after)
}

// TestAgentKeepOnShutdown: the default keeps capsules running across an agent restart and records
// nothing.
func TestAgentKeepOnShutdown(t *testing.T) {
	h := agenthost.Start(t, agenthost.Options{})
	id := newID()
	create(t, h, id)
	t.Cleanup(func() {
		_, _ = h.API.DestroySandbox(context.Background(), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id}))
	})
	h.Stop()
	if len(runscProcesses(id)) == 0 {
		t.Fatal("capsule stopped with the agent")
	}
	if _, err := os.Stat(filepath.Join(h.DataDir, suspend.FileName)); !os.IsNotExist(err) {
		t.Errorf("keep mode wrote a record: %v", err)
	}
	h.Start()
	if st := status(t, h, id); st != hav1.SandboxStatus_SANDBOX_STATUS_RUNNING {
		t.Fatalf("capsule after restart is %v", st)
	}
}

// TestAgentFlagErrors: bad -on-shutdown values are refused before anything is set up.
func TestAgentFlagErrors(t *testing.T) {
	bin := testutil.BuildBinary(t, "./cmd/wrenn-agent")
	out, err := exec.Command(bin, "-on-shutdown", "hibernate", "-data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `-on-shutdown: "hibernate" is neither keep nor pause`) {
		t.Fatalf("-on-shutdown hibernate: %v %s", err, out)
	}
}

// runscProcesses lists processes whose command line names capsule id.
func runscProcesses(id string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "runsc") && strings.Contains(cmd, id) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}
