package envd_test

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
	envdprocess "github.com/wrenn/wrenn/internal/envd/process"
)

func connectReplay(t *testing.T, e *env, pid uint32, from string) *result {
	t.Helper()
	req := connect.NewRequest(&process.ConnectRequest{Process: selPid(pid)})
	if from != "" {
		req.Header().Set(envdprocess.ReplayFromHeader, from)
	}
	s, err := e.proc.Connect(ctxT(t, 20*time.Second), req)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return drain(t, s)
}

func TestReplay(t *testing.T) {
	if envdprocess.ReplayFromHeader != replayHeader {
		t.Fatalf("replay header is %q, the protocol extension says %q", envdprocess.ReplayFromHeader, replayHeader)
	}
	e := startEnvd(t)

	t.Run("running process", func(t *testing.T) {
		// "second" waits for the gate, so it comes after the replayed "first".
		gate := filepath.Join(t.TempDir(), "gate")
		ctx, cancel := context.WithCancel(t.Context()) // no deadline: it would bound the process
		defer cancel()
		s, err := e.proc.Start(ctx, connect.NewRequest(bash("printf first; until [ -e "+gate+" ]; do sleep 0.05; done; printf second")))
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		// Streams follow the output log: once the start stream has "first",
		// the log has it.
		started := &result{}
		for !strings.Contains(started.stdout.String(), "first") && s.Receive() {
			started.add(t, s.Msg().GetEvent())
		}
		if started.stdout.String() != "first" {
			t.Fatalf("start stream: %q, %v", started.stdout.String(), s.Err())
		}
		req := connect.NewRequest(&process.ConnectRequest{Process: selPid(started.pid)})
		req.Header().Set(envdprocess.ReplayFromHeader, "0")
		cs, err := e.proc.Connect(ctxT(t, 30*time.Second), req)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		r := &result{}
		for !strings.Contains(r.stdout.String(), "first") && cs.Receive() {
			r.add(t, cs.Msg().GetEvent())
		}
		writeFile(t, gate, "")
		for cs.Receive() {
			r.add(t, cs.Msg().GetEvent())
		}
		r.err = cs.Err()
		_ = cs.Close()
		if r.err != nil || r.stdout.String() != "firstsecond" || r.end == nil {
			t.Fatalf("replay from 0: %q end %v err %v", r.stdout.String(), r.end, r.err)
		}
		if len(r.offsets) == 0 || !slices.IsSorted(r.offsets) || r.offsets[len(r.offsets)-1] != 11 {
			t.Fatalf("end offsets %v, want increasing and ending at 11", r.offsets)
		}
		for s.Receive() {
		}
	})
	t.Run("exited process from an offset", func(t *testing.T) {
		res := run(t, e.proc, bash("printf 0123456789"))
		pid := res.pid
		tests := []struct {
			from string
			want string
		}{
			{"0", "0123456789"},
			{"4", "456789"},
			{"10", ""},
			{"1000", ""},
		}
		for _, tt := range tests {
			r := connectReplay(t, e, pid, tt.from)
			if r.err != nil || r.stdout.String() != tt.want {
				t.Errorf("replay from %s: %q err %v, want %q", tt.from, r.stdout.String(), r.err, tt.want)
			}
			if r.end == nil || !r.end.GetExited() {
				t.Errorf("replay from %s: end %v", tt.from, r.end)
			}
			for _, off := range r.offsets {
				if n, _ := strconv.Atoi(tt.from); off <= uint64(n) || off > 10 {
					t.Errorf("replay from %s: offset %d out of range", tt.from, off)
				}
			}
		}
		// Without the header an exited process is not found, and no offsets are sent.
		s, err := e.proc.Connect(ctxT(t, 30*time.Second), connect.NewRequest(&process.ConnectRequest{Process: selPid(pid)}))
		if err == nil {
			for s.Receive() {
			}
			err = s.Err()
		}
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("no offsets without the header", func(t *testing.T) {
		// A plain Connect sees only live output: "x" waits for the gate,
		// opened once the Connect stream has its start event.
		gate := filepath.Join(t.TempDir(), "gate")
		p := startBG(t, e.proc, bash("until [ -e "+gate+" ]; do sleep 0.05; done; echo x"))
		cs, err := e.proc.Connect(ctxT(t, 30*time.Second), connect.NewRequest(&process.ConnectRequest{Process: selPid(p.pid)}))
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		r := &result{}
		if cs.Receive() {
			r.add(t, cs.Msg().GetEvent())
		}
		writeFile(t, gate, "")
		for cs.Receive() {
			r.add(t, cs.Msg().GetEvent())
		}
		r.err = cs.Err()
		_ = cs.Close()
		if r.err != nil || len(r.offsets) != 0 || r.stdout.String() != "x\n" {
			t.Fatalf("plain Connect: offsets %v stdout %q err %v", r.offsets, r.stdout.String(), r.err)
		}
		p.wait(t, 30*time.Second)
	})
	t.Run("invalid offset", func(t *testing.T) {
		p := startBG(t, e.proc, bash("sleep 60")) // killed below
		for _, bad := range []string{"-1", "abc"} {
			r := connectReplay(t, e, p.pid, bad)
			wantCode(t, r.err, connect.CodeInvalidArgument)
		}
		_ = kill(t, e.proc, p.pid, process.Signal_SIGNAL_SIGKILL)
	})
	t.Run("List include_exited", func(t *testing.T) {
		tag := "replay-list"
		req := bash("exit 7")
		req.Tag = ptr(tag)
		res := run(t, e.proc, req)
		plain := listPids(t, e.proc)
		if _, ok := plain[res.pid]; ok {
			t.Error("exited process in a plain List")
		}
		resp, err := e.proc.List(ctxT(t, 30*time.Second), connect.NewRequest(&process.ListRequest{IncludeExited: true}))
		if err != nil {
			t.Fatal(err)
		}
		var found *process.ProcessInfo
		for _, p := range resp.Msg.GetProcesses() {
			if p.GetPid() == res.pid {
				found = p
			}
		}
		if found == nil {
			t.Fatalf("exited pid %d not in List include_exited", res.pid)
		}
		if found.GetTag() != tag || found.GetEnd().GetExitCode() != 7 || !found.GetEnd().GetExited() ||
			found.GetStartedAt() == nil || found.GetExitedAt() == nil || found.GetExitedAt().AsTime().Before(found.GetStartedAt().AsTime()) {
			t.Errorf("exited record %v", found)
		}
	})
}
