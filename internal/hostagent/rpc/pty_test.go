package rpc

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
)

// ptySession reads a PtyAttach stream in the background.
type ptySession struct {
	started chan *v1.PtyStarted
	out     outputBuf
	exited  chan *v1.PtyExited
	done    chan error
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func attach(t *testing.T, h *harness, req *v1.PtyAttachRequest) *ptySession {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t, 60*time.Second))
	s := &ptySession{started: make(chan *v1.PtyStarted, 1), exited: make(chan *v1.PtyExited, 1), done: make(chan error, 1), cancel: cancel}
	st, err := h.client.PtyAttach(ctx, connect.NewRequest(req))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s.wg.Go(func() {
		defer st.Close()
		for st.Receive() {
			switch ev := st.Msg().GetEvent().(type) {
			case *v1.PtyAttachResponse_Started:
				s.started <- ev.Started
			case *v1.PtyAttachResponse_Output:
				s.out.write(ev.Output.GetData())
			case *v1.PtyAttachResponse_Exited:
				s.exited <- ev.Exited
			}
		}
		s.done <- st.Err()
	})
	t.Cleanup(s.close)
	return s
}

func (s *ptySession) close() {
	s.cancel()
	s.wg.Wait()
}

func (s *ptySession) waitStarted(t *testing.T) *v1.PtyStarted {
	t.Helper()
	select {
	case st := <-s.started:
		return st
	case err := <-s.done:
		t.Fatalf("pty stream ended before started: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no started event")
	}
	return nil
}

func (s *ptySession) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal output has no %q:\n%q", want, s.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPty(t *testing.T) {
	h := newHarness(t, true)
	ctx := ctxT(t, 60*time.Second)
	input := func(tag, s string) {
		t.Helper()
		if _, err := h.client.PtySendInput(ctx, connect.NewRequest(&v1.PtySendInputRequest{SandboxId: runningID, Tag: tag, Data: []byte(s)})); err != nil {
			t.Fatal(err)
		}
	}

	s1 := attach(t, h, &v1.PtyAttachRequest{
		SandboxId: runningID, Tag: "term-1", Cmd: "/bin/sh", Cols: 80, Rows: 24, Cwd: "/tmp",
		Envs: map[string]string{"PS1": "$ "},
	})
	st := s1.waitStarted(t)
	if st.GetPid() == 0 || st.GetTag() != "term-1" || st.GetReconnected() {
		t.Fatalf("started %v", st)
	}
	pid := st.GetPid()
	input("term-1", "stty size; echo mark-$((40+2))\n")
	s1.waitOutput(t, "24 80")
	s1.waitOutput(t, "mark-42")

	if _, err := h.client.PtyResize(ctx, connect.NewRequest(&v1.PtyResizeRequest{SandboxId: runningID, Tag: "term-1", Cols: 132, Rows: 40})); err != nil {
		t.Fatal(err)
	}
	input("term-1", "stty size\n")
	s1.waitOutput(t, "40 132")

	// A second terminal with the same tag is refused while the first runs.
	dup := attach(t, h, &v1.PtyAttachRequest{SandboxId: runningID, Tag: "term-1", Cmd: "/bin/sh", Cols: 80, Rows: 24})
	select {
	case err := <-dup.done:
		wantCode(t, err, connect.CodeAlreadyExists)
	case <-time.After(10 * time.Second):
		t.Fatal("duplicate terminal not refused")
	}

	// Disconnect: the terminal keeps running; reattaching replays the
	// scrollback, resizes when asked and follows live output.
	s1.close()
	// A negative check: nothing may end the terminal during this window; a
	// slow machine can only make it pass.
	time.Sleep(100 * time.Millisecond)
	if !alive(pid) {
		t.Fatal("disconnecting killed the terminal")
	}
	s2 := attach(t, h, &v1.PtyAttachRequest{SandboxId: runningID, Tag: "term-1", Cols: 100, Rows: 50})
	st = s2.waitStarted(t)
	if st.GetPid() != pid || !st.GetReconnected() || st.GetTag() != "term-1" {
		t.Fatalf("reattach started %v", st)
	}
	s2.waitOutput(t, "24 80")
	s2.waitOutput(t, "40 132")
	input("term-1", "stty size\n")
	s2.waitOutput(t, "50 100")

	// Unknown tags are not found.
	_, err := h.client.PtyResize(ctx, connect.NewRequest(&v1.PtyResizeRequest{SandboxId: runningID, Tag: "nope", Cols: 10, Rows: 10}))
	wantCode(t, err, connect.CodeNotFound)
	gone := attach(t, h, &v1.PtyAttachRequest{SandboxId: runningID, Tag: "nope"})
	select {
	case err := <-gone.done:
		wantCode(t, err, connect.CodeNotFound)
	case <-time.After(10 * time.Second):
		t.Fatal("reattach to unknown tag not refused")
	}

	if _, err := h.client.PtyKill(ctx, connect.NewRequest(&v1.PtyKillRequest{SandboxId: runningID, Tag: "term-1"})); err != nil {
		t.Fatal(err)
	}
	select {
	case ex := <-s2.exited:
		t.Logf("terminal exited with %d", ex.GetExitCode())
	case <-time.After(10 * time.Second):
		t.Fatal("no exited event after PtyKill")
	}
	if err := <-s2.done; err != nil {
		t.Fatalf("stream after exit: %v", err)
	}
	h.waitGone(t, pid, 30*time.Second)
	_, err = h.client.PtyKill(ctx, connect.NewRequest(&v1.PtyKillRequest{SandboxId: runningID, Tag: "term-1"}))
	wantCode(t, err, connect.CodeNotFound)
}
