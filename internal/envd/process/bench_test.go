package process

import (
	"bytes"
	"context"
	"os/exec"
	"testing"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// BenchmarkExecTrue starts `true` through envd over a loopback Connect
// client and waits for its end; compare with BenchmarkForkExecTrue.
func BenchmarkExecTrue(b *testing.B) {
	h := newHarness(b, Config{})
	for b.Loop() {
		st, err := h.bin.Start(context.Background(), connect.NewRequest(&process.StartRequest{Process: cmd("true"), Stdin: ptr(false)}))
		if err != nil {
			b.Fatal(err)
		}
		var end *process.ProcessEvent_EndEvent
		for st.Receive() {
			if e := st.Msg().GetEvent().GetEnd(); e != nil {
				end = e
			}
		}
		if st.Err() != nil || end == nil || end.GetExitCode() != 0 {
			b.Fatalf("end %v err %v", end, st.Err())
		}
		_ = st.Close()
	}
}

// BenchmarkForkExecTrue is the baseline: a plain exec.Command("true").Run()
// (no Service runs meanwhile, so its reaper cannot take the exit).
func BenchmarkForkExecTrue(b *testing.B) {
	for b.Loop() {
		if err := exec.Command("true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPTYEcho measures a PTY round trip: send one byte to `cat` in a
// raw-mode terminal (so the byte is neither line-buffered nor echoed by the
// terminal) and wait for cat to send it back.
func BenchmarkPTYEcho(b *testing.B) {
	h := newHarness(b, Config{})
	w := start(b, h.bin, &process.StartRequest{Process: sh("stty raw -echo; echo ready; exec cat"), Pty: &process.PTY{Size: &process.PTY_Size{Cols: 80, Rows: 24}}}, nil)
	w.waitOutput(b, "ready")
	in := &process.SendInputRequest{Process: bySel(w.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: []byte("x")}}}
	seen := 0
	for b.Loop() {
		if _, err := h.bin.SendInput(context.Background(), connect.NewRequest(in)); err != nil {
			b.Fatal(err)
		}
		seen++
		w.waitFor(b, "echo", func() bool { return bytes.Count(w.out.Bytes(), []byte("x")) >= seen })
	}
}
