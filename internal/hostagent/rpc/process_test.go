package rpc

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
)

func TestExec(t *testing.T) {
	h := newHarness(t, true)
	ctx := ctxT(t, 60*time.Second)

	res, err := h.client.Exec(ctx, connect.NewRequest(&v1.ExecRequest{
		SandboxId: runningID, Cmd: "/bin/sh",
		Args: []string{"-c", `echo "out $A $(pwd)"; echo err >&2; exit 3`},
		Envs: map[string]string{"A": "envval"}, Cwd: "/tmp",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Msg.GetStdout()); got != "out envval /tmp\n" {
		t.Errorf("stdout %q", got)
	}
	if got := string(res.Msg.GetStderr()); got != "err\n" {
		t.Errorf("stderr %q", got)
	}
	if res.Msg.GetExitCode() != 3 {
		t.Errorf("exit code %d", res.Msg.GetExitCode())
	}

	// The request's user wins over the capsule's default.
	res, err = h.client.Exec(ctx, connect.NewRequest(&v1.ExecRequest{SandboxId: runningID, Cmd: "id", Args: []string{"-un"}, User: "nobody", Cwd: "/tmp"}))
	if err != nil || string(res.Msg.GetStdout()) != "nobody\n" {
		t.Fatalf("exec as nobody: %v %v", res, err)
	}

	// Output beyond 16 MiB per stream is dropped; the command still completes.
	// The output is paced: envd keeps only the newest 1 MiB of a process's
	// output for a reader that falls behind.
	res, err = h.client.Exec(ctx, connect.NewRequest(&v1.ExecRequest{
		SandboxId: runningID, Cmd: "/bin/sh",
		Args: []string{"-c", "for i in $(seq 68); do head -c 262144 /dev/zero; sleep 0.02; done; echo done >&2"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Msg.GetStdout()) != maxExecOutput || string(res.Msg.GetStderr()) != "done\n" {
		t.Fatalf("big output: %d bytes stdout, stderr %q", len(res.Msg.GetStdout()), res.Msg.GetStderr())
	}

	// Bad input found by envd keeps envd's code.
	_, err = h.client.Exec(ctx, connect.NewRequest(&v1.ExecRequest{SandboxId: runningID, Cmd: "/no/such/binary"}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = h.client.Exec(ctx, connect.NewRequest(&v1.ExecRequest{SandboxId: runningID, Cmd: "true", User: "no-such-user-x"}))
	wantCode(t, err, connect.CodeUnauthenticated)

	// Timeout: envd kills the command at the deadline.
	start := time.Now()
	_, err = h.client.Exec(ctx, connect.NewRequest(&v1.ExecRequest{
		SandboxId: runningID, Cmd: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, TimeoutSec: 1,
	}))
	wantCode(t, err, connect.CodeDeadlineExceeded)
	// Generous for a slow machine, well below the call's own 60 s deadline
	// (which would give the same code).
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("timeout took %s", el)
	}
	answered := time.Since(start)
	var pid uint32
	for p, info := range h.processes(t, true) {
		if info.GetCmd() == "/bin/sh" && strings.Contains(strings.Join(info.GetArgs(), " "), "sleep 60") {
			pid = p
		}
	}
	if pid == 0 {
		t.Fatal("timed out command not listed")
	}
	h.waitGone(t, pid, 30*time.Second)
	t.Logf("exec timeout of 1 s answered after %s", answered.Round(time.Millisecond))
}

func TestExecStreamCancelKills(t *testing.T) {
	h := newHarness(t, true)
	ctx := ctxT(t, 60*time.Second)

	// A complete run: start, data, end.
	st, err := h.client.ExecStream(ctx, connect.NewRequest(&v1.ExecRequest{
		SandboxId: runningID, Cmd: "/bin/sh", Args: []string{"-c", "echo one; echo two >&2; exit 7"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	var pid uint32
	var end *v1.ProcessEnd
	for st.Receive() {
		switch ev := st.Msg().GetEvent().(type) {
		case *v1.ExecStreamResponse_Start:
			pid = ev.Start.GetPid()
		case *v1.ExecStreamResponse_Data:
			stdout.Write(ev.Data.GetStdout())
			stderr.Write(ev.Data.GetStderr())
		case *v1.ExecStreamResponse_End:
			end = ev.End
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	if pid == 0 || stdout.String() != "one\n" || stderr.String() != "two\n" || end.GetExitCode() != 7 {
		t.Fatalf("pid %d stdout %q stderr %q end %v", pid, stdout.String(), stderr.String(), end)
	}

	// Cancelling the stream kills the command long before its 30 s timeout.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err = h.client.ExecStream(sctx, connect.NewRequest(&v1.ExecRequest{
		SandboxId: runningID, Cmd: "/bin/sh", Args: []string{"-c", "echo ready; exec sleep 120"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	pid = 0
	for pid == 0 || stdout.Len() == 0 {
		if !st.Receive() {
			t.Fatalf("stream ended: %v", st.Err())
		}
		switch ev := st.Msg().GetEvent().(type) {
		case *v1.ExecStreamResponse_Start:
			pid = ev.Start.GetPid()
			stdout.Reset()
		case *v1.ExecStreamResponse_Data:
			stdout.Write(ev.Data.GetStdout())
		}
	}
	if !alive(pid) {
		t.Fatalf("process %d not running", pid)
	}
	cancel()
	_ = st.Close()
	took := h.waitGone(t, pid, 30*time.Second)
	t.Logf("process gone %s after the stream was cancelled", took.Round(time.Millisecond))
	if p := h.processes(t, true)[pid]; p.GetStatus() != "exited" {
		t.Fatalf("cancelled process: %v", p)
	}
}

func TestBackgroundProcesses(t *testing.T) {
	h := newHarness(t, true)
	ctx := ctxT(t, 60*time.Second)

	// The call's own deadline must not become the process's lifetime.
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := h.client.StartBackground(callCtx, connect.NewRequest(&v1.StartBackgroundRequest{
		SandboxId: runningID, Cmd: "/bin/sh", Tag: "bg-1", Envs: map[string]string{"N": "5"},
		Args: []string{"-c", `i=1; while [ $i -le $N ]; do echo line$i; i=$((i+1)); done; sleep 0.2; echo err >&2; exec sleep 120`},
	}))
	if err != nil {
		t.Fatal(err)
	}
	pid := res.Msg.GetPid()
	if pid == 0 || res.Msg.GetTag() != "bg-1" {
		t.Fatalf("start background: %v", res.Msg)
	}
	<-callCtx.Done()
	// A negative check: nothing may end the process during this window; a
	// slow machine can only make it pass.
	time.Sleep(300 * time.Millisecond)
	p := h.processes(t, false)[pid]
	if p == nil || p.GetStatus() != "running" || p.GetTag() != "bg-1" || p.GetCmd() != "/bin/sh" ||
		p.GetStartedAt() == nil || p.ExitCode != nil || !alive(pid) {
		t.Fatalf("background process after its call ended: %v (alive %v)", p, alive(pid))
	}

	// One running process per tag.
	_, err = h.client.StartBackground(ctx, connect.NewRequest(&v1.StartBackgroundRequest{SandboxId: runningID, Cmd: "true", Tag: "bg-1"}))
	wantCode(t, err, connect.CodeAlreadyExists)

	const all = "line1\nline2\nline3\nline4\nline5\nerr\n"
	replay := func(sel *v1.ConnectProcessRequest, want string) uint64 {
		t.Helper()
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		st, err := h.client.ConnectProcess(sctx, connect.NewRequest(sel))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var got strings.Builder
		var last uint64
		for got.Len() < len(want) {
			if !st.Receive() {
				t.Fatalf("connect stream ended: %v (got %q)", st.Err(), got.String())
			}
			switch ev := st.Msg().GetEvent().(type) {
			case *v1.ConnectProcessResponse_Start:
				if ev.Start.GetPid() != pid {
					t.Fatalf("connected to pid %d, want %d", ev.Start.GetPid(), pid)
				}
			case *v1.ConnectProcessResponse_Data:
				got.Write(ev.Data.GetStdout())
				got.Write(ev.Data.GetStderr())
				if ev.Data.GetEndOffset() <= last {
					t.Fatalf("end_offset %d after %d", ev.Data.GetEndOffset(), last)
				}
				last = ev.Data.GetEndOffset()
			case *v1.ConnectProcessResponse_End:
				t.Fatalf("process ended: %v", ev.End)
			}
		}
		if got.String() != want {
			t.Fatalf("replayed %q, want %q", got.String(), want)
		}
		return last
	}
	if end := replay(&v1.ConnectProcessRequest{SandboxId: runningID, Selector: &v1.ConnectProcessRequest_Pid{Pid: pid}}, all); end != uint64(len(all)) {
		t.Fatalf("end offset %d, want %d", end, len(all))
	}
	replay(&v1.ConnectProcessRequest{SandboxId: runningID, Selector: &v1.ConnectProcessRequest_Tag{Tag: "bg-1"}, Offset: 12}, all[12:])
	if !alive(pid) {
		t.Fatal("disconnecting killed the process")
	}

	_, err = h.client.KillProcess(ctx, connect.NewRequest(&v1.KillProcessRequest{SandboxId: runningID, Selector: &v1.KillProcessRequest_Pid{Pid: 999999}}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = h.client.KillProcess(ctx, connect.NewRequest(&v1.KillProcessRequest{SandboxId: runningID, Selector: &v1.KillProcessRequest_Tag{Tag: "no-such-tag"}}))
	wantCode(t, err, connect.CodeNotFound)
	if _, err := h.client.KillProcess(ctx, connect.NewRequest(&v1.KillProcessRequest{
		SandboxId: runningID, Selector: &v1.KillProcessRequest_Tag{Tag: "bg-1"}, Signal: "SIGTERM",
	})); err != nil {
		t.Fatal(err)
	}
	h.waitGone(t, pid, 30*time.Second)
	if _, listed := h.processes(t, false)[pid]; listed {
		t.Fatal("killed process listed without include_exited")
	}
	p = h.processes(t, true)[pid]
	if p.GetStatus() != "exited" || p.ExitCode == nil || p.GetExitedAt() == nil || p.GetStartedAt() == nil ||
		p.GetExitedAt().AsTime().Before(p.GetStartedAt().AsTime()) {
		t.Fatalf("exited record: %v", p)
	}

	// An exited process still replays its output, then its end.
	st, err := h.client.ConnectProcess(ctx, connect.NewRequest(&v1.ConnectProcessRequest{SandboxId: runningID, Selector: &v1.ConnectProcessRequest_Pid{Pid: pid}}))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var end *v1.ProcessEnd
	for st.Receive() {
		out.Write(st.Msg().GetData().GetStdout())
		out.Write(st.Msg().GetData().GetStderr())
		if e := st.Msg().GetEnd(); e != nil {
			end = e
		}
	}
	if err := st.Err(); err != nil || out.String() != all || end == nil {
		t.Fatalf("replay of exited process: %q end %v err %v", out.String(), end, err)
	}
	_ = st.Close()
}
