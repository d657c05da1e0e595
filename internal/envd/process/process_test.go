package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/envd/defaults"
)

func TestStartOutputAndExit(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name       string
		script     string
		stdout     string
		stderr     string
		exitCode   int32
		exited     bool
		status     string
		wantErrMsg bool
	}{
		{"exit 0", "echo out; echo err >&2", "out\n", "err\n", 0, true, "exit status 0", false},
		{"exit 3", "printf x; exit 3", "x", "", 3, true, "exit status 3", true},
		{"killed", "kill -KILL $$", "", "", -1, false, "signal: killed", true},
		{"terminated", "kill -TERM $$", "", "", -1, false, "signal: terminated", true},
	}
	for name, c := range h.clients() {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				w := start(t, c, &process.StartRequest{Process: sh(tt.script), Stdin: ptr(false)}, nil)
				end := w.wait(t)
				if err := w.streamErr(); err != nil {
					t.Fatalf("stream error: %v", err)
				}
				if _, ok := w.events[0].GetEvent().(*process.ProcessEvent_Start); !ok {
					t.Fatalf("first event = %v, want start", w.events[0])
				}
				if _, ok := w.events[len(w.events)-1].GetEvent().(*process.ProcessEvent_End); !ok {
					t.Fatalf("last event = %v, want end", w.events[len(w.events)-1])
				}
				if w.stdout.String() != tt.stdout || w.stderr.String() != tt.stderr {
					t.Errorf("stdout %q stderr %q, want %q %q", w.stdout.String(), w.stderr.String(), tt.stdout, tt.stderr)
				}
				if end.GetExitCode() != tt.exitCode || end.GetExited() != tt.exited || end.GetStatus() != tt.status {
					t.Errorf("end = %v, want exitCode %d exited %v status %q", end, tt.exitCode, tt.exited, tt.status)
				}
				if (end.Error != nil) != tt.wantErrMsg || (tt.wantErrMsg && end.GetError() != tt.status) {
					t.Errorf("end.error = %v, want set=%v equal to status", end.Error, tt.wantErrMsg)
				}
			})
		}
	}
}

func TestStartErrors(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name string
		msg  *process.StartRequest
		hdr  map[string]string
		code connect.Code
		text string
	}{
		{"missing cwd", &process.StartRequest{Process: &process.ProcessConfig{Cmd: "true", Cwd: ptr("/nonexistent/dir")}},
			nil, connect.CodeInvalidArgument, "cwd '/nonexistent/dir' does not exist"},
		{"cwd ~other", &process.StartRequest{Process: &process.ProcessConfig{Cmd: "true", Cwd: ptr("~nobody")}},
			nil, connect.CodeInvalidArgument, "cwd"},
		{"unknown user", &process.StartRequest{Process: cmd("true")},
			map[string]string{"Authorization": basicAuth("no-such-user-xyz")}, connect.CodeUnauthenticated, "invalid username"},
		{"malformed basic", &process.StartRequest{Process: cmd("true")},
			map[string]string{"Authorization": "Basic !!!"}, connect.CodeUnauthenticated, "invalid username"},
		{"unknown command", &process.StartRequest{Process: cmd("no-such-command-xyz")},
			nil, connect.CodeInvalidArgument, "executable file not found"},
		{"not executable", &process.StartRequest{Process: cmd("/etc/passwd")},
			nil, connect.CodeInvalidArgument, "permission denied"},
		{"empty command", &process.StartRequest{Process: &process.ProcessConfig{}},
			nil, connect.CodeInvalidArgument, "cmd is required"},
		{"malformed timeout", &process.StartRequest{Process: cmd("true")},
			map[string]string{"Connect-Timeout-Ms": "soon"}, connect.CodeInvalidArgument, "timeout"},
	}
	for name, c := range h.clients() {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				req := connect.NewRequest(tt.msg)
				for k, v := range tt.hdr {
					req.Header().Set(k, v)
				}
				st, err := c.Start(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				defer st.Close()
				if st.Receive() {
					t.Fatalf("got event %v, want none", st.Msg())
				}
				wantCode(t, st.Err(), tt.code, tt.text)
			})
		}
	}
	if n := len(listAll(t, h.json, true)); n != 0 {
		t.Errorf("%d processes listed after failed starts, want 0", n)
	}
}

// TestUserIdentity runs processes as a user created for the test and checks
// its credentials, environment and working directory (docs/envd.md).
func TestUserIdentity(t *testing.T) {
	requireRoot(t)
	name := fmt.Sprintf("wrenntest%d", os.Getpid()%100000)
	group := name + "g"
	// Users are created before the service starts and removed after it
	// stopped: while it runs its reaper collects every child of this process,
	// including useradd's.
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("groupadd", group)
	t.Cleanup(func() { _ = exec.Command("groupdel", group).Run() })
	run("useradd", "-m", "-s", "/bin/sh", "-G", group, name)
	t.Cleanup(func() { _ = exec.Command("userdel", "-r", name).Run() })
	wantUID := strings.TrimSpace(output(t, "id", "-u", name))
	wantGID := strings.TrimSpace(output(t, "id", "-g", name))
	wantGroups := strings.TrimSpace(output(t, "id", "-G", name))
	home := "/home/" + name
	if err := os.Mkdir(filepath.Join(home, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, Config{})
	h.store.Apply(defaults.Update{EnvVars: map[string]string{"GLOBAL": "g", "OVER": "global", "HOME_OVERRIDE": "x"}}, nil)
	script := `echo "$(id -u)|$(id -g)|$(id -G)|$HOME|$USER|$LOGNAME|$SHELL|$(pwd)|$GLOBAL|$OVER|$PATH"`
	want := func(cwd string, over string) string {
		return strings.Join([]string{wantUID, wantGID, wantGroups, home, name, name, "/bin/sh", cwd, "g", over, fallbackPATH}, "|") + "\n"
	}
	tests := []struct {
		name string
		cfg  *process.ProcessConfig
		want string
	}{
		{"home as cwd", sh(script), want(home, "global")},
		{"relative cwd joins home", &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}, Cwd: ptr("sub")}, want(home+"/sub", "global")},
		{"tilde cwd", &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}, Cwd: ptr("~/sub")}, want(home+"/sub", "global")},
		{"request env wins", &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}, Envs: map[string]string{"OVER": "req"}}, want(home, "req")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := start(t, h.json, &process.StartRequest{Process: tt.cfg, Stdin: ptr(false)}, map[string]string{"Authorization": basicAuth(name)})
			if end := w.wait(t); end.GetExitCode() != 0 {
				t.Fatalf("end %v, output %q", end, w.output())
			}
			if got := w.stdout.String(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
	t.Run("default user and workdir", func(t *testing.T) {
		h.store.Apply(defaults.Update{DefaultUser: name, DefaultWorkdir: "/tmp"}, nil)
		defer h.store.Apply(defaults.Update{DefaultUser: "root", DefaultWorkdir: "/"}, nil)
		w := start(t, h.bin, &process.StartRequest{Process: sh(script), Stdin: ptr(false)}, nil)
		w.wait(t)
		if got := w.stdout.String(); got != want("/tmp", "global") {
			t.Errorf("got  %q\nwant %q", got, want("/tmp", "global"))
		}
	})
}

func output(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func TestOOMScoreAdj(t *testing.T) {
	h := newHarness(t, Config{})
	w := start(t, h.bin, &process.StartRequest{Process: sh("read x; cat /proc/self/oom_score_adj")}, nil)
	// The adjustment is made right after the fork; by the time the start
	// event arrived it is in place.
	send(t, h.bin, w.pid, "\n")
	w.wait(t)
	if got := strings.TrimSpace(w.stdout.String()); got != userOOMScoreAdj {
		t.Errorf("oom_score_adj = %q, want %s", got, userOOMScoreAdj)
	}
}

func send(t testing.TB, c interface {
	SendInput(context.Context, *connect.Request[process.SendInputRequest]) (*connect.Response[process.SendInputResponse], error)
}, pid uint32, data string) {
	t.Helper()
	_, err := c.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{
		Process: bySel(pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte(data)}},
	}))
	if err != nil {
		t.Fatalf("SendInput: %v", err)
	}
}

func sendPTY(t testing.TB, h *harness, pid uint32, data string) error {
	t.Helper()
	_, err := h.json.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{
		Process: bySel(pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: []byte(data)}},
	}))
	return err
}

func TestStdin(t *testing.T) {
	h := newHarness(t, Config{})
	t.Run("absent opens a pipe; CloseStdin is idempotent", func(t *testing.T) {
		w := start(t, h.json, &process.StartRequest{Process: sh("cat; echo done; sleep 0.2")}, nil)
		send(t, h.json, w.pid, "abc")
		w.waitOutput(t, "abc")
		for range 2 {
			if _, err := h.bin.CloseStdin(context.Background(), connect.NewRequest(&process.CloseStdinRequest{Process: bySel(w.pid)})); err != nil {
				t.Fatalf("CloseStdin: %v", err)
			}
		}
		w.waitOutput(t, "abcdone\n")
		_, err := h.json.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{
			Process: bySel(w.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("late")}},
		}))
		wantCode(t, err, connect.CodeInternal, "not open")
		if end := w.wait(t); end.GetExitCode() != 0 {
			t.Fatalf("end %v", end)
		}
	})
	t.Run("false connects /dev/null", func(t *testing.T) {
		w := start(t, h.json, &process.StartRequest{Process: sh("cat; echo eof; sleep 30"), Stdin: ptr(false)}, nil)
		w.waitOutput(t, "eof")
		_, err := h.json.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{
			Process: bySel(w.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("x")}},
		}))
		wantCode(t, err, connect.CodeInternal, "not open")
		_, err = h.json.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{
			Process: bySel(w.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: []byte("x")}},
		}))
		wantCode(t, err, connect.CodeInternal, "no pty")
		_, err = h.json.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{Process: bySel(w.pid), Input: &process.ProcessInput{}}))
		wantCode(t, err, connect.CodeInvalidArgument, "required")
		if _, err := h.json.CloseStdin(context.Background(), connect.NewRequest(&process.CloseStdinRequest{Process: bySel(w.pid)})); err != nil {
			t.Fatalf("CloseStdin without a pipe: %v", err)
		}
		_, err = h.json.Update(context.Background(), connect.NewRequest(&process.UpdateRequest{
			Process: bySel(w.pid), Pty: &process.PTY{Size: &process.PTY_Size{Cols: 10, Rows: 10}},
		}))
		wantCode(t, err, connect.CodeInternal, "no pty")
		if _, err := h.json.Update(context.Background(), connect.NewRequest(&process.UpdateRequest{Process: bySel(w.pid)})); err != nil {
			t.Fatalf("Update without pty: %v", err)
		}
		if err := kill(t, h.json, bySel(w.pid), process.Signal_SIGNAL_SIGKILL); err != nil {
			t.Fatal(err)
		}
		w.wait(t)
	})
	t.Run("unknown process", func(t *testing.T) {
		_, err := h.json.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{Process: bySel(1 << 30)}))
		wantCode(t, err, connect.CodeNotFound, "process with pid 1073741824 not found")
		_, err = h.json.CloseStdin(context.Background(), connect.NewRequest(&process.CloseStdinRequest{Process: byTag("nope")}))
		wantCode(t, err, connect.CodeNotFound, "process with tag nope not found")
		_, err = h.json.Update(context.Background(), connect.NewRequest(&process.UpdateRequest{Process: &process.ProcessSelector{}}))
		wantCode(t, err, connect.CodeInvalidArgument, "pid or tag")
	})
}

func TestStreamInput(t *testing.T) {
	h := newHarness(t, Config{})
	w := start(t, h.bin, &process.StartRequest{Process: cmd("cat"), Tag: ptr("cat")}, nil)
	st := h.bin.StreamInput(context.Background())
	data := func(s string) *process.StreamInputRequest {
		return &process.StreamInputRequest{Event: &process.StreamInputRequest_Data{Data: &process.StreamInputRequest_DataEvent{
			Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte(s)}}}}}
	}
	msgs := []*process.StreamInputRequest{
		{Event: &process.StreamInputRequest_Start{Start: &process.StreamInputRequest_StartEvent{Process: byTag("cat")}}},
		data("one "),
		{Event: &process.StreamInputRequest_Keepalive{Keepalive: &process.StreamInputRequest_KeepAlive{}}},
		data("two"),
	}
	for _, m := range msgs {
		if err := st.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	w.waitOutput(t, "one two")
	if _, err := st.CloseAndReceive(); err != nil {
		t.Fatalf("CloseAndReceive: %v", err)
	}

	t.Run("data before start", func(t *testing.T) {
		st := h.bin.StreamInput(context.Background())
		_ = st.Send(data("x"))
		_, err := st.CloseAndReceive()
		wantCode(t, err, connect.CodeInvalidArgument, "data before start")
	})
	t.Run("unknown process", func(t *testing.T) {
		st := h.bin.StreamInput(context.Background())
		_ = st.Send(&process.StreamInputRequest{Event: &process.StreamInputRequest_Start{Start: &process.StreamInputRequest_StartEvent{Process: bySel(1 << 30)}}})
		_, err := st.CloseAndReceive()
		wantCode(t, err, connect.CodeNotFound, "not found")
	})
	if _, err := h.bin.CloseStdin(context.Background(), connect.NewRequest(&process.CloseStdinRequest{Process: byTag("cat")})); err != nil {
		t.Fatal(err)
	}
	if end := w.wait(t); end.GetExitCode() != 0 {
		t.Fatalf("end %v", end)
	}
}

func TestPTY(t *testing.T) {
	h := newHarness(t, Config{})
	w := start(t, h.json, &process.StartRequest{
		Process: sh(`stty size; read line; stty size; echo "in:$line"; tty`),
		Pty:     &process.PTY{Size: &process.PTY_Size{Cols: 80, Rows: 24}},
		Stdin:   ptr(true), // ignored for a PTY
	}, nil)
	w.waitOutput(t, "24 80")
	if _, err := h.bin.Update(context.Background(), connect.NewRequest(&process.UpdateRequest{
		Process: bySel(w.pid), Pty: &process.PTY{Size: &process.PTY_Size{Cols: 100, Rows: 30}},
	})); err != nil {
		t.Fatalf("Update: %v", err)
	}
	_, err := h.json.SendInput(context.Background(), connect.NewRequest(&process.SendInputRequest{
		Process: bySel(w.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("x")}},
	}))
	wantCode(t, err, connect.CodeInternal, "has a pty")
	_, err = h.json.CloseStdin(context.Background(), connect.NewRequest(&process.CloseStdinRequest{Process: bySel(w.pid)}))
	wantCode(t, err, connect.CodeInternal, "pty")
	if err := sendPTY(t, h, w.pid, "hello\n"); err != nil {
		t.Fatal(err)
	}
	end := w.wait(t)
	out := w.output()
	for _, want := range []string{"hello\r\n", "30 100\r\n", "in:hello\r\n", "/dev/pts/"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	if w.stdout.Len()+w.stderr.Len() != 0 {
		t.Errorf("PTY output arrived as stdout/stderr")
	}
	if end.GetExitCode() != 0 {
		t.Errorf("end %v", end)
	}
}

func TestSendSignal(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name   string
		sel    func(pid uint32, tag string) *process.ProcessSelector
		sig    process.Signal
		status string
	}{
		{"SIGKILL by pid", func(pid uint32, _ string) *process.ProcessSelector { return bySel(pid) }, process.Signal_SIGNAL_SIGKILL, "signal: killed"},
		{"SIGTERM by tag", func(_ uint32, tag string) *process.ProcessSelector { return byTag(tag) }, process.Signal_SIGNAL_SIGTERM, "signal: terminated"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag := fmt.Sprintf("sig-%d", i)
			w := start(t, h.bin, &process.StartRequest{Process: cmd("sleep", "100"), Tag: ptr(tag)}, nil)
			if err := kill(t, h.json, tt.sel(w.pid, tag), tt.sig); err != nil {
				t.Fatal(err)
			}
			end := w.wait(t)
			if end.GetExitCode() != -1 || end.GetExited() || end.GetStatus() != tt.status || end.GetError() != tt.status {
				t.Errorf("end = %v, want -1/false/%q", end, tt.status)
			}
			err := kill(t, h.json, bySel(w.pid), tt.sig)
			wantCode(t, err, connect.CodeNotFound, fmt.Sprintf("process with pid %d not found", w.pid))
		})
	}
	t.Run("errors", func(t *testing.T) {
		w := start(t, h.bin, &process.StartRequest{Process: cmd("sleep", "100")}, nil)
		wantCode(t, kill(t, h.json, bySel(w.pid), process.Signal_SIGNAL_UNSPECIFIED), connect.CodeInvalidArgument, "signal")
		wantCode(t, kill(t, h.json, bySel(w.pid), process.Signal(2)), connect.CodeUnimplemented, "not supported")
		wantCode(t, kill(t, h.json, &process.ProcessSelector{}, process.Signal_SIGNAL_SIGKILL), connect.CodeInvalidArgument, "pid or tag")
		wantCode(t, kill(t, h.json, byTag("missing"), process.Signal_SIGNAL_SIGKILL), connect.CodeNotFound, "process with tag missing not found")
		if err := kill(t, h.json, bySel(w.pid), process.Signal_SIGNAL_SIGKILL); err != nil {
			t.Fatal(err)
		}
		w.wait(t)
	})
}

// pgrepArgs returns the live pids running exactly `sleep marker`.
func pgrepArgs(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")) == "sleep "+marker {
			if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && !strings.Contains(string(stat), ") Z ") {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func waitGone(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(pgrepArgs(marker)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes %v (%s) still running", pgrepArgs(marker), marker)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGroupKill(t *testing.T) {
	h := newHarness(t, Config{})
	marker := "1000.4242"
	w := start(t, h.json, &process.StartRequest{Process: cmd("bash", "-c", "sleep "+marker+" & sleep "+marker)}, nil)
	deadline := time.Now().Add(30 * time.Second)
	for len(pgrepArgs(marker)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(pgrepArgs(marker)); n != 2 {
		t.Fatalf("%d sleeps running, want 2", n)
	}
	if err := kill(t, h.json, bySel(w.pid), process.Signal_SIGNAL_SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.wait(t)
	waitGone(t, marker)
}

// TestSignalCutsOutput: after a signal, end follows the reap even though a
// descendant outside the process group still holds the output pipe.
func TestSignalCutsOutput(t *testing.T) {
	h := newHarness(t, Config{})
	marker := "1000.4343"
	t.Cleanup(func() {
		for _, pid := range pgrepArgs(marker) {
			_ = syscallKill(pid)
		}
		waitGone(t, marker)
	})
	w := start(t, h.json, &process.StartRequest{Process: sh("setsid sleep " + marker + " & echo ready; exec sleep 100")}, nil)
	w.waitOutput(t, "ready")
	began := time.Now()
	if err := kill(t, h.json, bySel(w.pid), process.Signal_SIGNAL_SIGTERM); err != nil {
		t.Fatal(err)
	}
	if end := w.wait(t); end.GetStatus() != "signal: terminated" {
		t.Errorf("end %v", end)
	}
	if d := time.Since(began); d >= drainGrace {
		t.Errorf("end took %v after the signal; want it right after the reap", d)
	}
}

// TestExitDrainsThenCuts: a process that exits on its own gets all of its
// output, and a descendant holding the pipe delays end by at most drainGrace.
func TestExitDrainsThenCuts(t *testing.T) {
	h := newHarness(t, Config{})
	marker := "1000.4444"
	t.Cleanup(func() {
		for _, pid := range pgrepArgs(marker) {
			_ = syscallKill(pid)
		}
		waitGone(t, marker)
	})
	began := time.Now()
	w := start(t, h.json, &process.StartRequest{Process: sh("setsid sleep " + marker + " & echo bye")}, nil)
	end := w.wait(t)
	if end.GetExitCode() != 0 || w.stdout.String() != "bye\n" {
		t.Errorf("end %v, stdout %q", end, w.stdout.String())
	}
	// Generous for a slow machine: without the cut the end would wait for
	// the sleep, which w.wait would not see.
	if d := time.Since(began); d > drainGrace+10*time.Second {
		t.Errorf("end took %v, want about drainGrace (%v)", d, drainGrace)
	}
}

func TestLifetime(t *testing.T) {
	h := newHarness(t, Config{})
	t.Run("start stream ends with deadline_exceeded and the process dies", func(t *testing.T) {
		w := start(t, h.json, &process.StartRequest{Process: cmd("sleep", "100")}, map[string]string{"Connect-Timeout-Ms": "2000"})
		c := connectTo(t, h.bin, bySel(w.pid), nil) // no deadline of its own
		w.wait(t)
		wantCode(t, w.streamErr(), connect.CodeDeadlineExceeded, "")
		end := c.wait(t)
		if end.GetStatus() != "signal: killed" {
			t.Errorf("Connect end = %v, want signal: killed", end)
		}
	})
	t.Run("lifetime holds without a stream", func(t *testing.T) {
		w := start(t, h.bin, &process.StartRequest{Process: cmd("sleep", "100"), Tag: ptr("detached")}, map[string]string{"Connect-Timeout-Ms": "2000"})
		w.cancel()
		<-w.done
		if _, err := h.svc.find(byTag("detached"), false); err != nil {
			t.Fatalf("process gone after the stream closed: %v", err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := h.svc.find(byTag("detached"), false); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("process still running after its lifetime")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	t.Run("no header: process outlives its stream", func(t *testing.T) {
		w := start(t, h.bin, &process.StartRequest{Process: cmd("sleep", "100")}, nil)
		w.cancel()
		<-w.done
		// A negative check: nothing may end the process during this window;
		// a slow machine can only make it pass.
		time.Sleep(100 * time.Millisecond)
		c := connectTo(t, h.json, bySel(w.pid), nil)
		if err := kill(t, h.json, bySel(w.pid), process.Signal_SIGNAL_SIGKILL); err != nil {
			t.Fatal(err)
		}
		if end := c.wait(t); end.GetStatus() != "signal: killed" {
			t.Errorf("end %v", end)
		}
	})
}

func TestKeepalive(t *testing.T) {
	h := newHarness(t, Config{})
	began := time.Now()
	w := start(t, h.json, &process.StartRequest{Process: cmd("sleep", "2.5")}, map[string]string{"Keepalive-Ping-Interval": "1"})
	w.wait(t)
	// Keepalive n is due n s after the call began: a slow machine can only
	// lower the count for the time the stream took.
	if took := time.Since(began); w.keepalives < 1 || w.keepalives > int(took/time.Second) {
		t.Errorf("%d keepalives in %v at 1 s interval, want 1..%d", w.keepalives, took, int(took/time.Second))
	}
	w2 := start(t, h.json, &process.StartRequest{Process: cmd("sleep", "1.5")}, nil)
	w2.wait(t)
	if w2.keepalives != 0 {
		t.Errorf("%d keepalives with the 90 s default", w2.keepalives)
	}
}

func TestConnect(t *testing.T) {
	h := newHarness(t, Config{})
	w := start(t, h.json, &process.StartRequest{Process: sh("echo before; read x; echo after"), Tag: ptr("c1")}, nil)
	w.waitOutput(t, "before")
	var consumers []*watcher
	for i := range 3 {
		c := h.json
		if i%2 == 1 {
			c = h.bin
		}
		cw := connectTo(t, c, byTag("c1"), nil)
		if cw.pid != w.pid {
			t.Fatalf("Connect start pid %d, want %d", cw.pid, w.pid)
		}
		consumers = append(consumers, cw)
	}
	send(t, h.json, w.pid, "\n")
	for _, cw := range append(consumers, w) {
		if end := cw.wait(t); end == nil || end.GetExitCode() != 0 {
			t.Fatalf("end %v err %v", end, cw.streamErr())
		}
	}
	for _, cw := range consumers {
		if got := cw.output(); got != "after\n" {
			t.Errorf("Connect got %q, want only output after connecting", got)
		}
		for _, ev := range cw.events {
			if d := ev.GetData(); d != nil && d.GetEndOffset() != 0 {
				t.Errorf("standard Connect got end_offset %d", d.GetEndOffset())
			}
		}
	}
	if w.output() != "before\nafter\n" {
		t.Errorf("Start got %q", w.output())
	}
	cw := connectTo(t, h.json, bySel(w.pid), nil)
	wantCode(t, cw.streamErr(), connect.CodeNotFound, fmt.Sprintf("process with pid %d not found", w.pid))
	cw = connectTo(t, h.json, &process.ProcessSelector{}, nil)
	wantCode(t, cw.streamErr(), connect.CodeInvalidArgument, "pid or tag")
}

// TestStalledConsumer: a consumer that never reads does not slow the process
// or other consumers down.
func TestStalledConsumer(t *testing.T) {
	const size = 8 << 20
	h := newHarness(t, Config{OutputLimit: 2 * size})
	w := start(t, h.bin, &process.StartRequest{Process: sh("read x; head -c 8388608 /dev/zero"), Tag: ptr("big")}, nil)

	// The stalled consumer: the stream is opened but never read, so HTTP/2
	// flow control soon blocks envd's sends to it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled, err := h.bin.Connect(ctx, connect.NewRequest(&process.ConnectRequest{Process: byTag("big")}))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	fast := connectTo(t, h.json, byTag("big"), nil)
	send(t, h.json, w.pid, "\n")
	for _, c := range []*watcher{w, fast} {
		if end := c.wait(t); end.GetExitCode() != 0 {
			t.Fatalf("end %v", end)
		}
		c.mu.Lock()
		n := c.out.Len()
		c.mu.Unlock()
		if n != size {
			t.Errorf("consumer got %d bytes, want %d", n, size)
		}
	}
}

// TestStartGetsAllOutput: the Start stream of a process that writes far
// more than the history holds, as fast as it can, still receives every
// byte (the process waits for it), while a stalled Connect consumer costs
// nothing and does not hold the process back.
func TestStartGetsAllOutput(t *testing.T) {
	const limit, size = 64 << 10, 16 << 20
	h := newHarness(t, Config{OutputLimit: limit})
	w := start(t, h.bin, &process.StartRequest{Process: sh("read x; head -c 16777216 /dev/urandom | od -An -v -tx1 | head -c 16777216"), Tag: ptr("fast")}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stalled, err := h.bin.Connect(ctx, connect.NewRequest(&process.ConnectRequest{Process: byTag("fast")}))
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	send(t, h.bin, w.pid, "\n")
	if end := w.wait(t); end.GetExitCode() != 0 {
		t.Fatalf("end %v", end)
	}
	w.mu.Lock()
	n := w.out.Len()
	w.mu.Unlock()
	if n != size {
		t.Fatalf("Start stream got %d bytes, want %d", n, size)
	}
}

func TestList(t *testing.T) {
	h := newHarness(t, Config{})
	w := start(t, h.json, &process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "sleep", Args: []string{"100"}, Envs: map[string]string{"A": "1"}, Cwd: ptr("/tmp")},
		Tag:     ptr("listed"),
	}, nil)
	w2 := start(t, h.json, &process.StartRequest{Process: cmd("true"), Pty: &process.PTY{}}, nil)
	w2.wait(t)

	list := listAll(t, h.json, false)
	if len(list) != 1 {
		t.Fatalf("List = %v, want the one running process", list)
	}
	got := list[0]
	if got.GetPid() != w.pid || got.GetTag() != "listed" || got.GetConfig().GetCmd() != "sleep" ||
		strings.Join(got.GetConfig().GetArgs(), " ") != "100" || len(got.GetConfig().GetEnvs()) != 1 ||
		got.GetConfig().GetEnvs()["A"] != "1" || got.GetConfig().GetCwd() != "/tmp" {
		t.Errorf("List entry = %v", got)
	}
	if got.StartedAt != nil || got.End != nil || got.Pty {
		t.Errorf("standard List carries Wrenn fields: %v", got)
	}

	all := listAll(t, h.bin, true)
	if len(all) != 2 {
		t.Fatalf("List include_exited = %v, want 2 entries", all)
	}
	for _, p := range all {
		if p.StartedAt == nil {
			t.Errorf("entry %d without started_at", p.GetPid())
		}
		switch p.GetPid() {
		case w.pid:
			if p.End != nil || p.ExitedAt != nil || p.Pty {
				t.Errorf("running entry = %v", p)
			}
		case w2.pid:
			if p.End == nil || !p.End.GetExited() || p.ExitedAt == nil || !p.Pty || p.Config.Cwd != nil {
				t.Errorf("exited entry = %v", p)
			}
		default:
			t.Errorf("unexpected entry %v", p)
		}
	}
	_ = kill(t, h.json, bySel(w.pid), process.Signal_SIGNAL_SIGKILL)
	w.wait(t)
	if n := len(listAll(t, h.json, false)); n != 0 {
		t.Errorf("%d entries after the end, want 0", n)
	}
}

func listAll(t testing.TB, c interface {
	List(context.Context, *connect.Request[process.ListRequest]) (*connect.Response[process.ListResponse], error)
}, exited bool) []*process.ProcessInfo {
	t.Helper()
	resp, err := c.List(context.Background(), connect.NewRequest(&process.ListRequest{IncludeExited: exited}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.GetProcesses()
}

func TestCloseKillsEverything(t *testing.T) {
	h := newHarness(t, Config{})
	marker := "1000.4545"
	w := start(t, h.json, &process.StartRequest{Process: cmd("bash", "-c", "sleep "+marker+" & sleep "+marker)}, nil)
	p := start(t, h.bin, &process.StartRequest{Process: cmd("sleep", marker), Pty: &process.PTY{}}, nil)
	h.svc.Close()
	for _, x := range []*watcher{w, p} {
		if end := x.wait(t); end.GetStatus() != "signal: killed" {
			t.Errorf("end %v", end)
		}
	}
	waitGone(t, marker)
	st, err := h.json.Start(context.Background(), connect.NewRequest(&process.StartRequest{Process: cmd("true")}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for st.Receive() {
	}
	wantCode(t, st.Err(), connect.CodeUnavailable, "shutting down")
}

// TestStartedHook: every successful start calls Config.Started (envd pokes
// the port scanner with it); a failed start does not.
func TestStartedHook(t *testing.T) {
	var mu sync.Mutex
	n := 0
	h := newHarness(t, Config{Started: func() { mu.Lock(); n++; mu.Unlock() }})
	for _, c := range h.clients() {
		w := start(t, c, &process.StartRequest{Process: sh("true"), Stdin: ptr(false)}, nil)
		w.wait(t)
	}
	mu.Lock()
	got := n
	mu.Unlock()
	if got != len(h.clients()) {
		t.Fatalf("Started called %d times for %d starts", got, len(h.clients()))
	}
	st, err := h.bin.Start(context.Background(), connect.NewRequest(&process.StartRequest{Process: cmd("/etc/passwd")}))
	if err != nil {
		t.Fatal(err)
	}
	for st.Receive() {
	}
	st.Close()
	mu.Lock()
	got = n
	mu.Unlock()
	if got != len(h.clients()) {
		t.Fatalf("Started called %d times after a failed start, want %d", got, len(h.clients()))
	}
}
