package envd_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestCommandForeground(t *testing.T) {
	e := startEnvd(t)
	baseFDs := e.fds(t)
	tests := []struct {
		name       string
		script     string
		stdout     string
		stderr     string
		exitCode   int32
		exited     bool
		status     string
		wantErrMsg string
	}{
		{"exit 0", "echo hello", "hello\n", "", 0, true, "exit status 0", ""},
		{"exit 3", "echo out; echo err >&2; exit 3", "out\n", "err\n", 3, true, "exit status 3", "exit status 3"},
		{"killed", "kill -9 $$", "", "", -1, false, "signal: killed", "signal: killed"},
	}
	for _, tr := range transports() {
		for _, tt := range tests {
			t.Run(tr.name+"/"+tt.name, func(t *testing.T) {
				r := run(t, e.procVia(tr), bash(tt.script))
				if r.err != nil {
					t.Fatalf("stream error: %v", r.err)
				}
				if r.pid == 0 {
					t.Error("start event without pid")
				}
				if got := r.stdout.String(); got != tt.stdout {
					t.Errorf("stdout = %q, want %q", got, tt.stdout)
				}
				if got := r.stderr.String(); got != tt.stderr {
					t.Errorf("stderr = %q, want %q", got, tt.stderr)
				}
				if r.end == nil {
					t.Fatal("no end event")
				}
				if r.end.GetExitCode() != tt.exitCode || r.end.GetExited() != tt.exited || r.end.GetStatus() != tt.status {
					t.Errorf("end = %v, want exitCode %d exited %v status %q", r.end, tt.exitCode, tt.exited, tt.status)
				}
				if (r.end.Error != nil) != (tt.wantErrMsg != "") || r.end.GetError() != tt.wantErrMsg {
					t.Errorf("end.error = %v, want %q", r.end.Error, tt.wantErrMsg)
				}
			})
		}
	}
	e.requireNoFDLeak(t, baseFDs)
}

func TestCommandEnvironment(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	req := bash(`pwd; echo "$X"; whoami; echo "$HOME"; echo "$USER"`)
	req.Process.Envs = map[string]string{"X": "1"}
	req.Process.Cwd = ptr(dir)
	r := run(t, e.proc, req)
	want := fmt.Sprintf("%s\n1\nroot\n/root\nroot\n", dir)
	if r.stdout.String() != want || r.end.GetExitCode() != 0 {
		t.Fatalf("stdout %q (end %v), want %q", r.stdout.String(), r.end, want)
	}

	t.Run("cmd looked up on PATH without a shell", func(t *testing.T) {
		r := run(t, e.proc, &process.StartRequest{
			Process: &process.ProcessConfig{Cmd: "printf", Args: []string{"%s|%s", "a b", "$HOME"}},
		})
		if got := r.stdout.String(); got != "a b|$HOME" {
			t.Fatalf("stdout = %q, want args passed verbatim", got)
		}
	})
	t.Run("missing cwd", func(t *testing.T) {
		req := bash("true")
		req.Process.Cwd = ptr(filepath.Join(dir, "missing"))
		r := run(t, e.proc, req)
		wantCode(t, r.err, connect.CodeInvalidArgument)
	})
	t.Run("unknown user", func(t *testing.T) {
		r := run(t, e.proc, bash("true"), "Authorization", basicUser("no-such-user-wrn"))
		wantCode(t, r.err, connect.CodeUnauthenticated)
	})
	t.Run("spawn failure", func(t *testing.T) {
		r := run(t, e.proc, &process.StartRequest{Process: &process.ProcessConfig{Cmd: "/nonexistent/binary"}})
		wantCode(t, r.err, connect.CodeInvalidArgument)
	})
	e.requireHealthy(t)
}

func TestUserSwitch(t *testing.T) {
	e := startEnvd(t)
	u := testutil.CreateUser(t, testutil.RandomName("wrnt", 8))
	if out, err := execOut("usermod", "-aG", "users", u.Name); err != nil {
		t.Fatalf("usermod: %v\n%s", err, out)
	}
	pu, err := user.Lookup(u.Name)
	if err != nil {
		t.Fatal(err)
	}
	gids, err := pu.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(gids)
	script := `whoami; echo "$HOME"; pwd; id -u; id -g; id -G | tr ' ' '\n' | sort | tr '\n' ' '; echo; echo "$USER $LOGNAME"`
	r := run(t, e.proc, bash(script), "Authorization", basicUser(u.Name))
	want := fmt.Sprintf("%s\n%s\n%s\n%d\n%d\n%s \n%s %s\n", u.Name, u.Home, u.Home, u.UID, u.GID, strings.Join(sortedNumeric(gids), " "), u.Name, u.Name)
	if got := r.stdout.String(); got != want {
		t.Fatalf("as %s:\n got %q\nwant %q (stderr %q, end %v)", u.Name, got, want, r.stderr.String(), r.end)
	}

	t.Run("relative cwd resolves under the user's home", func(t *testing.T) {
		sub := filepath.Join(u.Home, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, cwd := range []string{"sub", "~/sub"} {
			req := bash("pwd")
			req.Process.Cwd = ptr(cwd)
			r := run(t, e.proc, req, "Authorization", basicUser(u.Name))
			if got := r.stdout.String(); got != sub+"\n" {
				t.Errorf("cwd %q: pwd = %q, want %q (err %v)", cwd, got, sub, r.err)
			}
		}
	})
}

func sortedNumeric(ids []string) []string {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(a, b) })
	return out
}

func TestBackgroundAndConnect(t *testing.T) {
	t.Parallel()
	e := startEnvd(t)
	for _, tr := range transports()[:2] {
		t.Run(tr.name, func(t *testing.T) {
			pc := e.procVia(tr)
			tag := testutil.RandomName("proc-", 8)
			req := bash("echo before; sleep 1; echo done")
			req.Tag = ptr(tag)
			ctx, cancel := context.WithCancel(t.Context())
			s, err := pc.Start(ctx, connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			first := &result{}
			// Read up to "before", then disconnect: the process must go on.
			for s.Receive() {
				first.add(t, s.Msg().GetEvent())
				if strings.Contains(first.stdout.String(), "before") {
					break
				}
			}
			cancel()
			_ = s.Close()
			if first.pid == 0 {
				t.Fatalf("no start event: %v", s.Err())
			}

			info, ok := listPids(t, pc)[first.pid]
			if !ok {
				t.Fatalf("pid %d not listed after disconnect", first.pid)
			}
			if info.GetTag() != tag || info.GetConfig().GetCmd() != "/bin/bash" ||
				!slices.Equal(info.GetConfig().GetArgs(), req.Process.Args) {
				t.Errorf("List entry = %v", info)
			}

			// Two consumers, one by pid and one by tag, each get everything after connecting.
			byPid, err := pc.Connect(ctxT(t, 30*time.Second), connect.NewRequest(&process.ConnectRequest{Process: selPid(first.pid)}))
			if err != nil {
				t.Fatal(err)
			}
			byTag, err := pc.Connect(ctxT(t, 30*time.Second), connect.NewRequest(&process.ConnectRequest{Process: selTag(tag)}))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan *result, 1)
			go func() { done <- drainQuiet(byTag) }()
			r := drain(t, byPid)
			r2 := <-done
			for i, r := range []*result{r, r2} {
				if r.err != nil || r.pid != first.pid {
					t.Errorf("consumer %d: err %v pid %d, want pid %d", i, r.err, r.pid, first.pid)
				}
				if got := r.stdout.String(); got != "done\n" {
					t.Errorf("consumer %d: stdout %q, want only output after connecting", i, got)
				}
				if r.end == nil || !r.end.GetExited() {
					t.Errorf("consumer %d: end %v", i, r.end)
				}
			}
			eventually(t, 30*time.Second, "process leaves the table after its end", func() bool {
				_, ok := listPids(t, pc)[first.pid]
				return !ok
			})
			_, err = pc.Connect(ctxT(t, 30*time.Second), connect.NewRequest(&process.ConnectRequest{Process: selPid(first.pid)}))
			if err == nil {
				s, _ := pc.Connect(ctxT(t, 30*time.Second), connect.NewRequest(&process.ConnectRequest{Process: selPid(first.pid)}))
				for s.Receive() {
				}
				err = s.Err()
			}
			wantCode(t, err, connect.CodeNotFound)
		})
	}
}

// drainQuiet drains a stream without touching t (for goroutines).
func drainQuiet(s *connect.ServerStreamForClient[process.ConnectResponse]) *result {
	r := &result{}
	for s.Receive() {
		switch e := s.Msg().GetEvent().GetEvent().(type) {
		case *process.ProcessEvent_Start:
			r.pid = e.Start.GetPid()
		case *process.ProcessEvent_Data:
			r.stdout.Write(e.Data.GetStdout())
			r.stderr.Write(e.Data.GetStderr())
			r.pty.Write(e.Data.GetPty())
		case *process.ProcessEvent_End:
			r.end = e.End
		case *process.ProcessEvent_Keepalive:
			r.keepalives++
		}
	}
	r.err = s.Err()
	_ = s.Close()
	return r
}

func TestStdin(t *testing.T) {
	e := startEnvd(t)
	t.Run("SendInput and CloseStdin", func(t *testing.T) {
		req := bash("cat")
		req.Stdin = ptr(true)
		p := startBG(t, e.proc, req)
		for _, chunk := range []string{"hi\n", "there\n"} {
			if _, err := e.proc.SendInput(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendInputRequest{
				Process: selPid(p.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte(chunk)}},
			})); err != nil {
				t.Fatalf("SendInput: %v", err)
			}
		}
		for range 2 { // closing twice is fine
			if _, err := e.proc.CloseStdin(ctxT(t, 30*time.Second), connect.NewRequest(&process.CloseStdinRequest{Process: selPid(p.pid)})); err != nil {
				t.Fatalf("CloseStdin: %v", err)
			}
		}
		r := p.wait(t, 30*time.Second)
		if r.stdout.String() != "hi\nthere\n" || r.end.GetExitCode() != 0 {
			t.Fatalf("stdout %q end %v", r.stdout.String(), r.end)
		}
	})
	t.Run("absent stdin opens a pipe", func(t *testing.T) {
		req := bash("head -c 3")
		req.Stdin = nil
		p := startBG(t, e.proc, req)
		if _, err := e.proc.SendInput(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendInputRequest{
			Process: selPid(p.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("abcdef")}},
		})); err != nil {
			t.Fatalf("SendInput: %v", err)
		}
		if r := p.wait(t, 30*time.Second); r.stdout.String() != "abc" {
			t.Fatalf("stdout %q", r.stdout.String())
		}
	})
	t.Run("stdin false gives /dev/null", func(t *testing.T) {
		r := run(t, e.proc, bash("cat; echo rc=$?"))
		if r.stdout.String() != "rc=0\n" {
			t.Fatalf("stdout %q", r.stdout.String())
		}
		p := startBG(t, e.proc, bash("sleep 5"))
		_, err := e.proc.SendInput(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendInputRequest{
			Process: selPid(p.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("x")}},
		}))
		if err == nil {
			t.Fatal("SendInput to a process without stdin succeeded")
		}
		_ = kill(t, e.proc, p.pid, process.Signal_SIGNAL_SIGKILL)
	})
	t.Run("StreamInput over h2c", func(t *testing.T) {
		req := bash("cat")
		req.Stdin = ptr(true)
		p := startBG(t, e.proc, req)
		pc := e.procVia(transports()[1])
		cs := pc.StreamInput(ctxT(t, 30*time.Second))
		msgs := []*process.StreamInputRequest{
			{Event: &process.StreamInputRequest_Start{Start: &process.StreamInputRequest_StartEvent{Process: selPid(p.pid)}}},
			{Event: &process.StreamInputRequest_Data{Data: &process.StreamInputRequest_DataEvent{Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("one ")}}}}},
			{Event: &process.StreamInputRequest_Keepalive{Keepalive: &process.StreamInputRequest_KeepAlive{}}},
			{Event: &process.StreamInputRequest_Data{Data: &process.StreamInputRequest_DataEvent{Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("two")}}}}},
		}
		for _, m := range msgs {
			if err := cs.Send(m); err != nil {
				t.Fatalf("StreamInput send: %v", err)
			}
		}
		if _, err := cs.CloseAndReceive(); err != nil {
			t.Fatalf("StreamInput: %v", err)
		}
		if _, err := e.proc.CloseStdin(ctxT(t, 30*time.Second), connect.NewRequest(&process.CloseStdinRequest{Process: selPid(p.pid)})); err != nil {
			t.Fatalf("CloseStdin: %v", err)
		}
		if r := p.wait(t, 30*time.Second); r.stdout.String() != "one two" {
			t.Fatalf("stdout %q", r.stdout.String())
		}
	})
	t.Run("StreamInput data before start", func(t *testing.T) {
		cs := e.procVia(transports()[1]).StreamInput(ctxT(t, 30*time.Second))
		_ = cs.Send(&process.StreamInputRequest{Event: &process.StreamInputRequest_Data{Data: &process.StreamInputRequest_DataEvent{Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("x")}}}}})
		_, err := cs.CloseAndReceive()
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}

func TestSignals(t *testing.T) {
	t.Parallel()
	e := startEnvd(t)
	tests := []struct {
		name   string
		signal process.Signal
		status string
	}{
		{"SIGKILL", process.Signal_SIGNAL_SIGKILL, "signal: killed"},
		{"SIGTERM", process.Signal_SIGNAL_SIGTERM, "signal: terminated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The grandchild holds the pipes; envd must still end promptly
			// and should kill the whole group.
			p := startBG(t, e.proc, bash("sleep 300 & echo $!; exec sleep 300"))
			var child int
			eventually(t, 30*time.Second, "grandchild pid printed", func() bool {
				out := backgroundSleep(p)
				child, _ = strconv.Atoi(out)
				return child > 0
			})
			if err := kill(t, e.proc, p.pid, tt.signal); err != nil {
				t.Fatalf("SendSignal: %v", err)
			}
			r := p.wait(t, 30*time.Second)
			if r.end == nil || r.end.GetExitCode() != -1 || r.end.GetExited() || r.end.GetStatus() != tt.status || r.end.GetError() != tt.status {
				t.Fatalf("end = %v, want exitCode -1, not exited, status %q", r.end, tt.status)
			}
			eventually(t, 30*time.Second, "grandchild killed with its group", func() bool {
				return syscall.Kill(child, 0) != nil || isZombie(child)
			})
			wantCode(t, kill(t, e.proc, p.pid, tt.signal), connect.CodeNotFound)
		})
	}
	t.Run("bad signal", func(t *testing.T) {
		p := startBG(t, e.proc, bash("sleep 30"))
		for _, sig := range []process.Signal{process.Signal_SIGNAL_UNSPECIFIED, process.Signal(2)} {
			err := kill(t, e.proc, p.pid, sig)
			if c := connect.CodeOf(err); err == nil || (c != connect.CodeUnimplemented && c != connect.CodeInvalidArgument) {
				t.Errorf("signal %v: got %v, want unimplemented or invalid_argument", sig, err)
			}
		}
		if _, ok := listPids(t, e.proc)[p.pid]; !ok {
			t.Error("process gone after a refused signal")
		}
		_ = kill(t, e.proc, p.pid, process.Signal_SIGNAL_SIGKILL)
		p.wait(t, 30*time.Second)
	})
	t.Run("unknown tag", func(t *testing.T) {
		_, err := e.proc.SendSignal(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendSignalRequest{
			Process: selTag("no-such-tag"), Signal: process.Signal_SIGNAL_SIGKILL,
		}))
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("empty selector", func(t *testing.T) {
		_, err := e.proc.SendSignal(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendSignalRequest{
			Process: &process.ProcessSelector{}, Signal: process.Signal_SIGNAL_SIGKILL,
		}))
		wantCode(t, err, connect.CodeInvalidArgument)
	})
	e.requireHealthy(t)
}

// backgroundSleep finds the grandchild "sleep" below p's process (the
// Start stream itself belongs to startBG's goroutine).
func backgroundSleep(p *started) string {
	for _, c := range testutil.Descendants(int(p.pid)) {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c)); strings.TrimSpace(string(comm)) == "sleep" {
			return strconv.Itoa(c)
		}
	}
	return ""
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func TestLifetime(t *testing.T) {
	t.Parallel()
	e := startEnvd(t)
	t.Run("Connect-Timeout-Ms kills the process", func(t *testing.T) {
		start := time.Now()
		p := startBG(t, e.proc, bash("sleep 30"), "Connect-Timeout-Ms", "1500")
		r := p.wait(t, 20*time.Second)
		// Only a lower bound: a slow machine ends the stream later, never
		// earlier. The deadline_exceeded code shows the timeout ended it.
		if took := time.Since(start); took < time.Second {
			t.Errorf("stream ended after %v, want ~1.5 s", took)
		}
		if connect.CodeOf(r.err) != connect.CodeDeadlineExceeded {
			t.Errorf("stream error %v, want deadline_exceeded", r.err)
		}
		eventually(t, 30*time.Second, "timed-out process leaves the table", func() bool {
			_, ok := listPids(t, e.proc)[p.pid]
			return !ok
		})
	})
	t.Run("detached process is killed too", func(t *testing.T) {
		req := connect.NewRequest(bash("sleep 30"))
		req.Header().Set("Connect-Timeout-Ms", "1500")
		ctx, cancel := context.WithCancel(t.Context())
		s, err := e.proc.Start(ctx, req)
		if err != nil || !s.Receive() {
			t.Fatalf("Start: %v %v", err, s.Err())
		}
		pid := s.Msg().GetEvent().GetStart().GetPid()
		cancel()
		_ = s.Close()
		if _, ok := listPids(t, e.proc)[pid]; !ok {
			t.Fatal("process gone right after disconnect")
		}
		eventually(t, 30*time.Second, "detached process killed at its deadline", func() bool {
			_, ok := listPids(t, e.proc)[pid]
			return !ok
		})
	})
	t.Run("no timeout outlives the stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		s, err := e.proc.Start(ctx, connect.NewRequest(bash("sleep 30")))
		if err != nil || !s.Receive() {
			t.Fatalf("Start: %v %v", err, s.Err())
		}
		pid := s.Msg().GetEvent().GetStart().GetPid()
		cancel()
		_ = s.Close()
		// A negative check: nothing may kill the process during this window;
		// a slow machine can only make it pass.
		time.Sleep(2 * time.Second)
		if _, ok := listPids(t, e.proc)[pid]; !ok {
			t.Fatal("process without timeout died after disconnect")
		}
		_ = kill(t, e.proc, pid, process.Signal_SIGNAL_SIGKILL)
	})
	t.Run("malformed timeout", func(t *testing.T) {
		status, frames := rawStream(t, e, "/process.Process/Start", envelope(0, []byte(`{"process":{"cmd":"/bin/true"}}`)), "Connect-Timeout-Ms", "soon")
		if status == 200 {
			if code := streamError(t, frames); code != "invalid_argument" {
				t.Fatalf("end-of-stream code %q, want invalid_argument", code)
			}
		} else if status != 400 {
			t.Fatalf("status %d, want 200+invalid_argument or 400", status)
		}
	})
}

func TestKeepalive(t *testing.T) {
	t.Parallel()
	e := startEnvd(t)
	p := startBG(t, e.proc, bash("sleep 30"))
	req := connect.NewRequest(&process.ConnectRequest{Process: selPid(p.pid)})
	req.Header().Set("Keepalive-Ping-Interval", "1")
	// No deadline: connect-go would send it as Connect-Timeout-Ms.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stop := time.AfterFunc(60*time.Second, cancel)
	defer stop.Stop()
	start := time.Now()
	s, err := e.proc.Connect(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r := &result{}
	for r.keepalives < 3 && s.Receive() {
		r.add(t, s.Msg().GetEvent())
	}
	took := time.Since(start)
	cancel()
	_ = s.Close()
	if r.keepalives < 3 {
		t.Fatalf("%d keepalives with interval 1 s before the stream ended: %v", r.keepalives, s.Err())
	}
	// The third keepalive is due 3 s after the call began; a slow machine
	// only delays it, so this lower bound catches a too short interval.
	if took < 2500*time.Millisecond {
		t.Fatalf("3 keepalives after %v with interval 1 s", took)
	}
	_ = kill(t, e.proc, p.pid, process.Signal_SIGNAL_SIGKILL)
}

func TestPTY(t *testing.T) {
	e := startEnvd(t)
	req := &process.StartRequest{
		Process: &process.ProcessConfig{
			// Interactive, without the host's start-up files (root's profile is not this test's business).
			Cmd: "/bin/bash", Args: []string{"--noprofile", "--norc", "-i"},
			Envs: map[string]string{"TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
		},
		Pty: &process.PTY{Size: &process.PTY_Size{Cols: 80, Rows: 24}},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := e.proc.Start(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 64)
	var pid uint32
	if !s.Receive() || s.Msg().GetEvent().GetStart() == nil {
		t.Fatalf("no start event: %v", s.Err())
	}
	pid = s.Msg().GetEvent().GetStart().GetPid()
	streamDone := make(chan *result, 1)
	go func() {
		r := &result{pid: pid}
		for s.Receive() {
			ev := s.Msg().GetEvent()
			if d := ev.GetData(); d != nil {
				if len(d.GetStdout())+len(d.GetStderr()) > 0 {
					r.stdout.WriteString("non-pty output")
				}
				out <- string(d.GetPty())
			}
			if ev.GetEnd() != nil {
				r.end = ev.GetEnd()
			}
		}
		r.err = s.Err()
		close(out)
		streamDone <- r
	}()
	var seen strings.Builder
	expect := func(want string) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for !strings.Contains(seen.String(), want) {
			select {
			case chunk, ok := <-out:
				if !ok {
					t.Fatalf("stream ended before %q; output %q", want, seen.String())
				}
				seen.WriteString(chunk)
			case <-deadline:
				t.Fatalf("no %q in PTY output %q", want, seen.String())
			}
		}
	}
	input := func(s string) {
		t.Helper()
		if _, err := e.proc.SendInput(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendInputRequest{
			Process: selPid(pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: []byte(s)}},
		})); err != nil {
			t.Fatalf("SendInput pty: %v", err)
		}
	}
	input("stty size; tty; echo $TERM\n")
	expect("24 80")
	expect("/dev/pts/")
	expect("xterm-256color")

	if _, err := e.proc.Update(ctxT(t, 30*time.Second), connect.NewRequest(&process.UpdateRequest{
		Process: selPid(pid), Pty: &process.PTY{Size: &process.PTY_Size{Cols: 100, Rows: 30}},
	})); err != nil {
		t.Fatalf("Update: %v", err)
	}
	input("stty size\n")
	expect("30 100")
	if _, err := e.proc.Update(ctxT(t, 30*time.Second), connect.NewRequest(&process.UpdateRequest{Process: selPid(pid)})); err != nil {
		t.Errorf("Update without pty: %v", err)
	}

	// A second consumer through Connect sees new PTY output.
	cs, err := e.proc.Connect(ctxT(t, 30*time.Second), connect.NewRequest(&process.ConnectRequest{Process: selPid(pid)}))
	if err != nil {
		t.Fatal(err)
	}
	if !cs.Receive() || cs.Msg().GetEvent().GetStart().GetPid() != pid {
		t.Fatalf("Connect: no start event: %v", cs.Err())
	}
	input("echo marker-$((40+2))\n")
	expect("marker-42")
	var viaConnect strings.Builder
	for !strings.Contains(viaConnect.String(), "marker-42") && cs.Receive() {
		viaConnect.Write(cs.Msg().GetEvent().GetData().GetPty())
	}
	if !strings.Contains(viaConnect.String(), "marker-42") {
		t.Errorf("Connect consumer got %q, want marker-42", viaConnect.String())
	}
	_ = cs.Close()

	t.Run("wrong input kind", func(t *testing.T) {
		_, err := e.proc.SendInput(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendInputRequest{
			Process: selPid(pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Stdin{Stdin: []byte("x")}},
		}))
		if err == nil {
			t.Error("stdin input to a PTY process succeeded")
		}
		if _, err := e.proc.CloseStdin(ctxT(t, 30*time.Second), connect.NewRequest(&process.CloseStdinRequest{Process: selPid(pid)})); err == nil {
			t.Error("CloseStdin on a PTY succeeded")
		}
	})
	t.Run("resize a pipe process", func(t *testing.T) {
		p := startBG(t, e.proc, bash("sleep 30"))
		_, err := e.proc.Update(ctxT(t, 30*time.Second), connect.NewRequest(&process.UpdateRequest{
			Process: selPid(p.pid), Pty: &process.PTY{Size: &process.PTY_Size{Cols: 10, Rows: 10}},
		}))
		if err == nil {
			t.Error("resizing a non-PTY process succeeded")
		}
		_, err = e.proc.SendInput(ctxT(t, 30*time.Second), connect.NewRequest(&process.SendInputRequest{
			Process: selPid(p.pid), Input: &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: []byte("x")}},
		}))
		if err == nil {
			t.Error("pty input to a pipe process succeeded")
		}
		_ = kill(t, e.proc, p.pid, process.Signal_SIGNAL_SIGKILL)
	})

	if err := kill(t, e.proc, pid, process.Signal_SIGNAL_SIGKILL); err != nil {
		t.Fatalf("kill pty: %v", err)
	}
	select {
	case r := <-streamDone:
		if r.end == nil || r.end.GetStatus() != "signal: killed" {
			t.Errorf("pty end = %v (err %v)", r.end, r.err)
		}
		if r.stdout.Len() > 0 {
			t.Error("PTY process produced stdout/stderr data events")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("PTY stream did not end after kill")
	}
}

func execOut(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
