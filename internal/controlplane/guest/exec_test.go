package guest_test

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

func testExec(t *testing.T, f *fixture) {
	// Both prefixes, both credentials.
	for _, c := range []struct {
		prefix string
		cred   cptest.Cred
	}{
		{"/v1/capsules/", f.key()},
		{"/v1/sandboxes/", cptest.Bearer(f.alice.JWT)},
	} {
		res := f.do(t, "POST", c.prefix+f.capsule+"/exec", c.cred, map[string]any{
			"cmd": "/bin/sh", "args": []string{"-c", "echo hello $FOO; pwd; echo oops >&2"}, "envs": map[string]string{"FOO": "bar"},
		}, 200)
		var r execResult
		res.JSON(t, &r)
		if r.CapsuleID != f.capsule || r.SandboxID != f.capsule || r.Cmd != "/bin/sh" || r.Stdout != "hello bar\n/root\n" ||
			r.Stderr != "oops\n" || r.ExitCode != 0 || r.Encoding != "utf-8" || r.DurationMS == nil || *r.DurationMS < 0 {
			t.Fatalf("exec via %s: %s", c.prefix, res.Body)
		}
	}

	// cwd, non-zero exit.
	dir := f.tempDir(t)
	res := f.do(t, "POST", f.base()+"/exec", f.key(), map[string]any{"cmd": "sh", "args": []string{"-c", "pwd; exit 3"}, "cwd": dir}, 200)
	var r execResult
	res.JSON(t, &r)
	if r.Stdout != dir+"\n" || r.ExitCode != 3 {
		t.Fatalf("cwd + exit 3: %s", res.Body)
	}

	// Output that is not UTF-8 → both streams base64.
	res = f.do(t, "POST", f.base()+"/exec", f.key(), map[string]any{"cmd": "/bin/sh", "args": []string{"-c", `printf '\377\376'; echo e >&2`}}, 200)
	res.JSON(t, &r)
	if r.Encoding != "base64" || r.Stdout != base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}) || r.Stderr != base64.StdEncoding.EncodeToString([]byte("e\n")) {
		t.Fatalf("binary output: %s", res.Body)
	}

	// Killed by a signal → −1.
	res = f.do(t, "POST", f.base()+"/exec", f.key(), map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "kill -9 $$"}}, 200)
	res.JSON(t, &r)
	if r.ExitCode != -1 {
		t.Fatalf("killed by a signal: %s", res.Body)
	}

	// Over timeout_sec → 504, and the command is killed.
	marker := dir + "/late"
	// The 504 shows the timeout ended the call before the command did.
	res = f.env.Do(t, "POST", f.base()+"/exec", f.key(), map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "sleep 3; touch " + marker}, "timeout_sec": 1})
	wantError(t, res, 504, "timeout", "")
	// A negative check: the marker would appear 3 s after the command
	// started, which was before the answer; a slow machine can only make it pass.
	time.Sleep(3 * time.Second)
	if out := f.sh(t, "test -e "+marker+" && echo still-ran || echo killed"); out != "killed\n" {
		t.Fatalf("timed-out command was not killed: %q", out)
	}
}

func testExecErrors(t *testing.T, f *fixture) {
	for _, c := range []struct {
		name string
		body any
		msg  string
	}{
		{"no cmd", map[string]any{"args": []string{"x"}}, "cmd is required"},
		{"invalid JSON", []byte(`{"cmd":`), "invalid JSON body"},
		{"wrong type", map[string]any{"cmd": 5}, ""},
		{"negative timeout", map[string]any{"cmd": "true", "timeout_sec": -1}, "timeout_sec must not be negative"},
		{"bad tag", map[string]any{"cmd": "true", "background": true, "tag": "bad tag"}, ""},
		{"digit tag", map[string]any{"cmd": "true", "background": true, "tag": "12345"}, ""},
		{"long tag", map[string]any{"cmd": "true", "background": true, "tag": strings.Repeat("a", 65)}, ""},
		{"missing cwd", map[string]any{"cmd": "true", "cwd": "/does/not/exist"}, ""},
		{"cwd is a file", map[string]any{"cmd": "true", "cwd": "/etc/passwd"}, ""},
		{"background missing cwd", map[string]any{"cmd": "true", "background": true, "cwd": "/does/not/exist"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, f.env.Do(t, "POST", f.base()+"/exec", f.key(), c.body), 400, "invalid_request", c.msg)
		})
	}
}

// process is an entry of GET …/processes.
type process struct {
	PID       uint32     `json:"pid"`
	Tag       string     `json:"tag"`
	Cmd       string     `json:"cmd"`
	Args      []string   `json:"args"`
	Status    string     `json:"status"`
	ExitCode  *int       `json:"exit_code"`
	StartedAt *time.Time `json:"started_at"`
	ExitedAt  *time.Time `json:"exited_at"`
}

func (f *fixture) processes(t *testing.T, includeExited bool) []process {
	t.Helper()
	path := f.base() + "/processes"
	if includeExited {
		path += "?include_exited=true"
	}
	var out struct{ Processes []process }
	f.do(t, "GET", path, f.key(), nil, 200).JSON(t, &out)
	return out.Processes
}

func findProcess(ps []process, tag string) *process {
	for i := range ps {
		if ps[i].Tag == tag {
			return &ps[i]
		}
	}
	return nil
}

// background starts a background process and returns its pid and tag.
func (f *fixture) background(t *testing.T, tag, line string) (uint32, string) {
	t.Helper()
	body := map[string]any{"cmd": "/bin/sh", "args": []string{"-c", line}, "background": true}
	if tag != "" {
		body["tag"] = tag
	}
	res := f.do(t, "POST", f.base()+"/exec", f.key(), body, 202)
	var r struct {
		CapsuleID string `json:"capsule_id"`
		SandboxID string `json:"sandbox_id"`
		Cmd       string `json:"cmd"`
		PID       uint32 `json:"pid"`
		Tag       string `json:"tag"`
	}
	res.JSON(t, &r)
	if r.CapsuleID != f.capsule || r.SandboxID != f.capsule || r.Cmd != "/bin/sh" || r.PID == 0 || (tag != "" && r.Tag != tag) {
		t.Fatalf("background start: %s", res.Body)
	}
	return r.PID, r.Tag
}

var procTagRe = regexp.MustCompile(`^proc-[0-9a-f]{8}$`)

func testBackground(t *testing.T, f *fixture) {
	// A generated tag; the process outlives the request.
	dir := f.tempDir(t)
	pid, tag := f.background(t, "", "sleep 1; touch "+dir+"/done; sleep 300")
	if !procTagRe.MatchString(tag) {
		t.Fatalf("generated tag %q", tag)
	}
	eventually(t, "background process ran after the request", func() error {
		if f.sh(t, "test -e "+dir+"/done && echo yes || echo no") != "yes\n" {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	p := findProcess(f.processes(t, false), tag)
	if p == nil || p.PID != pid || p.Status != "running" || p.Cmd != "/bin/sh" || len(p.Args) != 2 || p.StartedAt == nil || p.ExitCode != nil || p.ExitedAt != nil {
		t.Fatalf("listed process: %+v", p)
	}
	// timeout_sec is ignored in the background.
	f.do(t, "POST", f.base()+"/exec", f.key(), map[string]any{"cmd": "sleep", "args": []string{"300"}, "background": true, "tag": "ignores-timeout", "timeout_sec": 1}, 202)

	// A tag in use → 409 conflict.
	f.background(t, "svc.web_1", "sleep 300")
	res := f.env.Do(t, "POST", f.base()+"/exec", f.key(), map[string]any{"cmd": "true", "background": true, "tag": "svc.web_1"})
	wantError(t, res, 409, "conflict", "")

	// Exited records appear only with include_exited.
	_, quick := f.background(t, "quick-exit", "exit 7")
	eventually(t, "exit record", func() error {
		p := findProcess(f.processes(t, true), quick)
		if p == nil || p.Status != "exited" {
			return fmt.Errorf("record %+v", p)
		}
		if p.ExitCode == nil || *p.ExitCode != 7 || p.ExitedAt == nil || p.StartedAt == nil {
			t.Fatalf("exit record %+v", p)
		}
		return nil
	})
	if findProcess(f.processes(t, false), quick) != nil {
		t.Fatal("exited process listed without include_exited")
	}
	wantError(t, f.env.Do(t, "GET", f.base()+"/processes?include_exited=maybe", f.key(), nil), 400, "invalid_request", "")

	for _, tg := range []string{tag, "ignores-timeout", "svc.web_1"} {
		f.do(t, "DELETE", f.base()+"/processes/"+tg, f.key(), nil, 204)
	}
}

func testKill(t *testing.T, f *fixture) {
	// SIGTERM by tag; then the exited process is 409.
	f.background(t, "term-me", "trap 'exit 143' TERM; while true; do sleep 0.1; done")
	f.do(t, "DELETE", f.base()+"/processes/term-me?signal=SIGTERM", f.key(), nil, 204)
	eventually(t, "SIGTERM ends the process", func() error {
		p := findProcess(f.processes(t, true), "term-me")
		if p == nil || p.Status != "exited" {
			return fmt.Errorf("process %+v", p)
		}
		return nil
	})
	wantError(t, f.env.Do(t, "DELETE", f.base()+"/processes/term-me", f.key(), nil), 409, "invalid_state", "")

	// SIGKILL (default) by PID, on the other prefix.
	pid, tag := f.background(t, "", "sleep 300")
	f.do(t, "DELETE", "/v1/sandboxes/"+f.capsule+"/processes/"+strconv.FormatUint(uint64(pid), 10), f.key(), nil, 204)
	eventually(t, "SIGKILL ends the process", func() error {
		p := findProcess(f.processes(t, true), tag)
		if p == nil || p.Status != "exited" || p.ExitCode == nil || *p.ExitCode != -1 {
			return fmt.Errorf("process %+v", p)
		}
		return nil
	})
	wantError(t, f.env.Do(t, "DELETE", f.base()+"/processes/"+strconv.FormatUint(uint64(pid), 10), f.key(), nil), 409, "invalid_state", "")

	// Unknown selectors → 404.
	wantError(t, f.env.Do(t, "DELETE", f.base()+"/processes/no-such-tag", f.key(), nil), 404, "not_found", "process with tag no-such-tag not found")
	wantError(t, f.env.Do(t, "DELETE", f.base()+"/processes/4294967295", f.key(), nil), 404, "not_found", "process with pid 4294967295 not found")
	wantError(t, f.env.Do(t, "DELETE", f.base()+"/processes/4294967296", f.key(), nil), 404, "not_found", "process with tag 4294967296 not found")
	wantError(t, f.env.Do(t, "DELETE", f.base()+"/processes/0", f.key(), nil), 404, "not_found", "")

	// Bad signal → 400, nothing killed.
	f.background(t, "keep-me", "sleep 300")
	for _, sig := range []string{"SIGHUP", "9", "sigkill"} {
		wantError(t, f.env.Do(t, "DELETE", f.base()+"/processes/keep-me?signal="+sig, f.key(), nil), 400, "invalid_request", "signal must be SIGTERM or SIGKILL")
	}
	if p := findProcess(f.processes(t, false), "keep-me"); p == nil || p.Status != "running" {
		t.Fatalf("process after refused kills: %+v", p)
	}
	f.do(t, "DELETE", f.base()+"/processes/keep-me", f.key(), nil, 204)
}

func testExecStream(t *testing.T, f *fixture) {
	// Output in order, exit, close 1000 (API key in the header, /v1/sandboxes prefix).
	c := mustDial(t, f, "/v1/sandboxes/"+f.capsule+"/exec/stream", f.key())
	c.send(map[string]any{"type": "start", "cmd": "/bin/sh", "args": []string{"-c", "echo one; sleep 0.2; echo two >&2; echo $X; exit 4"}, "envs": map[string]string{"X": "ex"}})
	start := c.next()
	if start.Type != "start" || start.PID == 0 {
		t.Fatalf("first frame %+v", start)
	}
	var stdout, stderr string
	for {
		fr := c.next()
		switch fr.Type {
		case "stdout":
			stdout += fr.Data
			continue
		case "stderr":
			stderr += fr.Data
			continue
		case "exit":
			if fr.ExitCode == nil || *fr.ExitCode != 4 {
				t.Fatalf("exit frame %+v", fr)
			}
		default:
			t.Fatalf("frame %+v", fr)
		}
		break
	}
	if stdout != "one\nex\n" || stderr != "two\n" {
		t.Fatalf("stdout %q stderr %q", stdout, stderr)
	}
	c.expectClosed(websocket.StatusNormalClosure)

	// stop → SIGKILL → exit −1.
	c = mustDial(t, f, f.base()+"/exec/stream", cptest.Bearer(f.alice.JWT))
	c.send(map[string]any{"type": "start", "cmd": "sleep", "args": []string{"300"}})
	if fr := c.next(); fr.Type != "start" {
		t.Fatalf("first frame %+v", fr)
	}
	c.send(map[string]string{"type": "stop"})
	if fr := c.next(); fr.Type != "exit" || fr.ExitCode == nil || *fr.ExitCode != -1 {
		t.Fatalf("after stop: %+v", fr)
	}
	c.expectClosed(websocket.StatusNormalClosure)

	// timeout_sec 0 = none: a command longer than the agent's 30 s default is not needed to show it,
	// but a given timeout applies: the stream fails with timeout.
	c = mustDial(t, f, f.base()+"/exec/stream", f.key())
	c.send(map[string]any{"type": "start", "cmd": "sleep", "args": []string{"30"}, "timeout_sec": 1})
	if fr := c.next(); fr.Type != "start" {
		t.Fatalf("first frame %+v", fr)
	}
	c.expectFatal("timeout")

	// Closing the socket before the exit kills the process.
	c = mustDial(t, f, f.base()+"/exec/stream", f.key())
	c.send(map[string]any{"type": "start", "cmd": "sleep", "args": []string{"301"}})
	fr := c.next()
	if fr.Type != "start" {
		t.Fatalf("first frame %+v", fr)
	}
	_ = c.conn.CloseNow()
	eventually(t, "closed exec stream kills its process", func() error {
		for _, p := range f.processes(t, false) {
			if p.PID == fr.PID {
				return fmt.Errorf("pid %d still running", fr.PID)
			}
		}
		return nil
	})

	// Protocol errors are fatal.
	c = mustDial(t, f, f.base()+"/exec/stream", f.key())
	c.send(map[string]string{"type": "stop"})
	if e := c.expectFatal("invalid_request"); e.Data != "first message must be type 'start'" {
		t.Fatalf("error %+v", e)
	}
	c = mustDial(t, f, f.base()+"/exec/stream", f.key())
	c.send(map[string]any{"type": "start"})
	if e := c.expectFatal("invalid_request"); e.Data != "cmd is required" {
		t.Fatalf("error %+v", e)
	}
	c = mustDial(t, f, f.base()+"/exec/stream", f.key())
	c.send(map[string]any{"type": "start", "cmd": "true", "cwd": "/nope"})
	c.expectFatal("invalid_request")
}
