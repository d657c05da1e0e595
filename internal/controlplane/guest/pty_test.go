package guest_test

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// ptyOutput collects decoded PTY output until it contains want.
func ptyOutput(t *testing.T, c *wsConn, want string) string {
	t.Helper()
	var sb strings.Builder
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		fr := c.next()
		switch fr.Type {
		case "output":
			b, err := base64.StdEncoding.DecodeString(fr.Data)
			if err != nil {
				t.Fatalf("output %q: %v", fr.Data, err)
			}
			sb.Write(b)
			if strings.Contains(sb.String(), want) {
				return sb.String()
			}
		case "error":
			t.Fatalf("error frame %+v (output so far %q)", fr, sb.String())
		default:
			t.Fatalf("frame %+v while waiting for %q (output so far %q)", fr, want, sb.String())
		}
	}
	t.Fatalf("no %q in PTY output %q", want, sb.String())
	return ""
}

func input(s string) map[string]string {
	return map[string]string{"type": "input", "data": base64.StdEncoding.EncodeToString([]byte(s))}
}

var ptyTagRe = regexp.MustCompile(`^pty-[0-9a-f]{8}$`)

func testPTY(t *testing.T, f *fixture) {
	// start with a generated tag, defaults (TERM, size, home).
	c := mustDial(t, f, f.base()+"/pty", f.key())
	c.send(map[string]any{"type": "start", "cmd": "/bin/sh", "envs": map[string]string{"GREETING": "hi"}})
	st := c.next()
	if st.Type != "started" || !ptyTagRe.MatchString(st.Tag) || st.PID == 0 || st.Reconnected {
		t.Fatalf("started %+v", st)
	}
	c.send(input("echo \"$TERM:$GREETING:$(pwd):$(stty size)\"\n"))
	ptyOutput(t, c, "xterm-256color:hi:/root:24 80")
	// The exit of the process itself: exit frame, close 1000.
	c.send(input("exit 3\n"))
	for {
		fr := c.next()
		if fr.Type == "output" {
			continue
		}
		if fr.Type != "exit" || fr.ExitCode == nil || *fr.ExitCode != 3 {
			t.Fatalf("after exit 3: %+v", fr)
		}
		break
	}
	c.expectClosed(websocket.StatusNormalClosure)

	// A named PTY: input split over frames arrives in order; resize; several sockets.
	a := mustDial(t, f, "/v1/sandboxes/"+f.capsule+"/pty", cptest.Bearer(f.alice.JWT))
	a.send(map[string]any{"type": "start", "cmd": "/bin/sh", "tag": "term.1", "cols": 100, "rows": 30})
	if st := a.next(); st.Type != "started" || st.Tag != "term.1" {
		t.Fatalf("started %+v", st)
	}
	for _, part := range []string{"ec", "ho ", "size=$(stty", " size)", "\n"} {
		a.send(input(part))
	}
	ptyOutput(t, a, "size=30 100")
	a.send(map[string]any{"type": "resize", "cols": 120, "rows": 40})
	a.send(map[string]any{"type": "resize", "cols": 0, "rows": 10}) // ignored
	a.send(map[string]string{"type": "input", "data": "%%% not base64"})
	a.send(map[string]string{"type": "pong"})
	a.send(input("echo now=$(stty size)\n"))
	ptyOutput(t, a, "now=40 120")

	// Close the socket: the PTY keeps running.
	_ = a.conn.Close(websocket.StatusNormalClosure, "")
	// A negative check: nothing may end the PTY during this window; a slow
	// machine can only make it pass.
	time.Sleep(200 * time.Millisecond)
	if p := findProcess(f.processes(t, false), "term.1"); p == nil || p.Status != "running" {
		t.Fatalf("PTY after its socket closed: %+v", p)
	}

	// Reconnect by tag: started reconnected, scrollback, then live; a second socket on the same tag
	// sees the same output, and input from either works.
	b := mustDial(t, f, f.base()+"/pty", f.key())
	b.send(map[string]any{"type": "connect", "tag": "term.1", "cols": 90, "rows": 20})
	if st := b.next(); st.Type != "started" || st.Tag != "term.1" || !st.Reconnected || st.PID == 0 {
		t.Fatalf("reconnect started %+v", st)
	}
	ptyOutput(t, b, "now=40 120") // scrollback
	b2 := mustDial(t, f, f.base()+"/pty", f.key())
	b2.send(map[string]any{"type": "connect", "tag": "term.1"})
	if st := b2.next(); st.Type != "started" || !st.Reconnected {
		t.Fatalf("second socket started %+v", st)
	}
	ptyOutput(t, b2, "now=40 120")
	b2.send(input("echo from-b2 $(stty size)\n"))
	ptyOutput(t, b, "from-b2 20 90") // connect with both sizes resized
	ptyOutput(t, b2, "from-b2 20 90")

	// Pings arrive on an idle socket.
	sawPing := false
	for !sawPing {
		fr, err := b.read(30 * time.Second)
		if err != nil {
			t.Fatalf("waiting for ping: %v", err)
		}
		sawPing = fr.Type == "ping"
	}
	b.send(map[string]string{"type": "pong"})

	// kill: exit to every socket, then close 1000.
	b.send(map[string]string{"type": "kill"})
	for _, s := range []*wsConn{b, b2} {
		for {
			fr := s.next()
			if fr.Type == "output" {
				continue
			}
			if fr.Type != "exit" || fr.ExitCode == nil || *fr.ExitCode != -1 {
				t.Fatalf("after kill: %+v", fr)
			}
			break
		}
		s.expectClosed(websocket.StatusNormalClosure)
	}
	// An exited PTY within retention: started, scrollback, exit.
	e := mustDial(t, f, f.base()+"/pty", f.key())
	e.send(map[string]any{"type": "connect", "tag": "term.1"})
	if st := e.next(); st.Type != "started" || !st.Reconnected {
		t.Fatalf("reconnect to exited PTY: %+v", st)
	}
	for {
		fr := e.next()
		if fr.Type == "output" {
			continue
		}
		if fr.Type != "exit" {
			t.Fatalf("exited PTY: %+v", fr)
		}
		break
	}
	e.expectClosed(websocket.StatusNormalClosure)

}

func testPTYErrors(t *testing.T, f *fixture) {
	fatal := func(msg any, code, data string) {
		t.Helper()
		c := mustDial(t, f, f.base()+"/pty", f.key())
		c.send(msg)
		fr := c.expectFatal(code)
		if data != "" && fr.Data != data {
			t.Fatalf("error data %q, want %q", fr.Data, data)
		}
	}
	fatal(map[string]string{"type": "input", "data": "eA=="}, "invalid_request", "first message must be type 'start' or 'connect'")
	fatal("not an object", "invalid_request", "first message must be type 'start' or 'connect'")
	fatal(map[string]string{"type": "connect"}, "invalid_request", "connect requires a 'tag' field")
	fatal(map[string]string{"type": "connect", "tag": "never-started"}, "not_found", "")
	fatal(map[string]any{"type": "start", "tag": "123"}, "invalid_request", "")
	fatal(map[string]any{"type": "start", "cmd": "/no/such/shell"}, "invalid_request", "")
	fatal(map[string]any{"type": "start", "cmd": "/bin/sh", "cols": 5000}, "invalid_request", "")

	// A failed start says so.
	c := mustDial(t, f, f.base()+"/pty", f.key())
	c.send(map[string]any{"type": "start", "cmd": "/no/such/shell"})
	if fr := c.expectFatal("invalid_request"); !strings.HasPrefix(fr.Data, "failed to start pty: ") {
		t.Fatalf("start failure %+v", fr)
	}

	// A tag used by a running process → conflict.
	f.background(t, "busy-tag", "sleep 300")
	fatal(map[string]any{"type": "start", "cmd": "/bin/sh", "tag": "busy-tag"}, "conflict", "")
	f.do(t, "DELETE", f.base()+"/processes/busy-tag", f.key(), nil, 204)

	// A refused resize is a non-fatal error frame; the session goes on.
	s := mustDial(t, f, f.base()+"/pty", f.key())
	s.send(map[string]any{"type": "start", "cmd": "/bin/sh", "tag": "short-lived"})
	if st := s.next(); st.Type != "started" {
		t.Fatalf("started %+v", st)
	}
	s.send(map[string]any{"type": "resize", "cols": 5000, "rows": 10})
	for {
		fr := s.next()
		if fr.Type == "output" {
			continue
		}
		if fr.Type != "error" || fr.Code != "invalid_request" || fr.Fatal {
			t.Fatalf("refused resize: %+v", fr)
		}
		break
	}
	s.send(input("echo still-$((6*7))\n"))
	ptyOutput(t, s, "still-42")
	s.send(map[string]string{"type": "kill"})
	for {
		if fr := s.next(); fr.Type == "exit" {
			break
		}
	}
	s.expectClosed(websocket.StatusNormalClosure)
}

func testPTYInactivity(t *testing.T, f *fixture) {
	c := mustDial(t, f, f.base()+"/pty", f.key())
	c.send(map[string]any{"type": "start", "cmd": "/bin/sh", "tag": "quiet"})
	if st := c.next(); st.Type != "started" {
		t.Fatalf("started %+v", st)
	}
	// Messages keep the socket open past the timeout (pongs count).
	for range 4 {
		time.Sleep(idleTimeout / 2)
		c.send(map[string]string{"type": "pong"})
	}
	c.send(input("echo alive-after-$((1+1))\n"))
	ptyOutput(t, c, "alive-after-2")
	// Silence: error inactivity_timeout, close 4000, the PTY keeps running.
	var fr frame
	for {
		var err error
		fr, err = c.read(idleTimeout + 30*time.Second)
		if err != nil {
			t.Fatalf("waiting for the inactivity error: %v", err)
		}
		if fr.Type == "error" {
			break
		}
	}
	if fr.Code != "inactivity_timeout" || !fr.Fatal || fr.Data != "no client message for 3s" {
		t.Fatalf("inactivity frame %+v", fr)
	}
	c.expectClosed(4000)
	if p := findProcess(f.processes(t, false), "quiet"); p == nil || p.Status != "running" {
		t.Fatalf("PTY after the inactivity timeout: %+v", p)
	}
	// Quiet before the first message too.
	q := mustDial(t, f, f.base()+"/pty", f.key())
	if fr := q.next(); fr.Type != "error" || fr.Code != "inactivity_timeout" {
		t.Fatalf("silent socket: %+v", fr)
	}
	q.expectClosed(4000)
	f.do(t, "DELETE", f.base()+"/processes/quiet", f.key(), nil, 204)
}
