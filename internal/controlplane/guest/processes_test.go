package guest_test

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// streamed is what a process stream delivered.
type streamed struct {
	start  frame
	chunks []frame
	exit   *frame
}

func (s streamed) text() string {
	var sb strings.Builder
	for _, c := range s.chunks {
		sb.WriteString(c.Data)
	}
	return sb.String()
}

// readStream reads start and output frames until until holds on the output (or the exit arrives
// when until is nil).
func readStream(t *testing.T, c *wsConn, until func(string) bool) streamed {
	t.Helper()
	var s streamed
	s.start = c.next()
	if s.start.Type != "start" {
		t.Fatalf("first frame %+v", s.start)
	}
	for {
		if until != nil && until(s.text()) {
			return s
		}
		fr := c.next()
		switch fr.Type {
		case "stdout", "stderr":
			if fr.Offset == nil {
				t.Fatalf("output frame without offset: %+v", fr)
			}
			s.chunks = append(s.chunks, fr)
		case "exit":
			s.exit = &fr
			return s
		default:
			t.Fatalf("frame %+v", fr)
		}
	}
}

func testProcessStream(t *testing.T, f *fixture) {
	dir := f.tempDir(t)
	gate := dir + "/go"
	pid, tag := f.background(t, "streamer", "echo one; echo err >&2; while [ ! -e "+gate+" ]; do sleep 0.05; done; echo two; exit 5")

	// Live: replay from 0, then the output that follows the gate, then exit and close 1000.
	live := mustDial(t, f, f.base()+"/processes/"+tag+"/stream", f.key())
	s := readStream(t, live, func(out string) bool { return strings.Contains(out, "one\n") && strings.Contains(out, "err\n") })
	if s.start.PID != pid || s.start.Tag != tag {
		t.Fatalf("start %+v, want pid %d tag %s", s.start, pid, tag)
	}
	// A second follower by PID (the start frame names the tag too).
	byPID := mustDial(t, f, f.base()+"/processes/"+strconv.FormatUint(uint64(pid), 10)+"/stream", cptest.Bearer(f.alice.JWT))
	s2 := readStream(t, byPID, func(out string) bool { return len(out) == 8 })
	if s2.start.PID != pid || s2.start.Tag != tag {
		t.Fatalf("start by pid %+v", s2.start)
	}
	f.sh(t, "touch "+gate)
	rest := readStream2(t, live)
	all := append(s.chunks, rest.chunks...)
	var end uint64
	var text string
	for _, c := range all {
		text += c.Data
		end = *c.Offset
	}
	if end != 12 || !strings.HasSuffix(text, "two\n") || len(text) != 12 {
		t.Fatalf("live output %q, last offset %d", text, end)
	}
	if rest.exit == nil || rest.exit.ExitCode == nil || *rest.exit.ExitCode != 5 {
		t.Fatalf("exit %+v", rest.exit)
	}
	live.expectClosed(websocket.StatusNormalClosure)
	if r := readStream2(t, byPID); r.exit == nil {
		t.Fatal("second follower saw no exit")
	}
	byPID.expectClosed(websocket.StatusNormalClosure)

	// Offsets: each chunk ends where the next starts; the first starts at 0.
	var prev uint64
	for _, c := range all {
		if *c.Offset-uint64(len(c.Data)) != prev {
			t.Fatalf("chunk %+v does not start at %d", c, prev)
		}
		prev = *c.Offset
	}

	// Replay of the exited process from a mid-chunk offset, base64: exactly the bytes from there, then
	// exit right after the replay.
	c := mustDial(t, f, f.base()+"/processes/"+tag+"/stream?offset=2&encoding=base64", f.key())
	r := readStream(t, c, nil)
	var replay []byte
	for i, ch := range r.chunks {
		b, err := base64.StdEncoding.DecodeString(ch.Data)
		if err != nil {
			t.Fatalf("chunk %q: %v", ch.Data, err)
		}
		if i == 0 && *ch.Offset-uint64(len(b)) != 2 {
			t.Fatalf("first replayed chunk starts at %d", *ch.Offset-uint64(len(b)))
		}
		replay = append(replay, b...)
	}
	if string(replay) != text[2:] || r.exit == nil || *r.exit.ExitCode != 5 {
		t.Fatalf("replay from 2: %q exit %+v, want %q", replay, r.exit, text[2:])
	}
	c.expectClosed(websocket.StatusNormalClosure)

	// Past the end: no output, only the exit.
	c = mustDial(t, f, f.base()+"/processes/"+tag+"/stream?offset=1000", f.key())
	if r := readStream(t, c, nil); len(r.chunks) != 0 || r.exit == nil {
		t.Fatalf("offset past the end: %+v", r)
	}

	// Text mode replaces invalid UTF-8 but offsets count raw bytes.
	f.background(t, "binary-out", `printf 'a\377b'`)
	eventually(t, "binary process exit", func() error {
		if p := findProcess(f.processes(t, true), "binary-out"); p == nil || p.Status != "exited" {
			return errNotYet
		}
		return nil
	})
	c = mustDial(t, f, f.base()+"/processes/binary-out/stream?encoding=text", f.key())
	r = readStream(t, c, nil)
	if r.text() != "a\uFFFDb" || *r.chunks[len(r.chunks)-1].Offset != 3 {
		t.Fatalf("text of invalid UTF-8: %+v", r.chunks)
	}

	// Client messages other than auth are ignored; a disconnect ends only the stream.
	f.background(t, "keeps-running", "while true; do echo tick; sleep 0.2; done")
	c = mustDial(t, f, f.base()+"/processes/keeps-running/stream", f.key())
	c.send(map[string]string{"type": "stop"})
	c.send(map[string]string{"type": "kill"})
	readStream(t, c, func(out string) bool { return strings.Count(out, "tick") >= 3 })
	_ = c.conn.Close(websocket.StatusNormalClosure, "")
	if p := findProcess(f.processes(t, false), "keeps-running"); p == nil || p.Status != "running" {
		t.Fatalf("process after the stream closed: %+v", p)
	}
	f.do(t, "DELETE", f.base()+"/processes/keeps-running", f.key(), nil, 204)
}

// readStream2 continues a stream after its start frame: output until the exit.
func readStream2(t *testing.T, c *wsConn) streamed {
	t.Helper()
	var s streamed
	for {
		fr := c.next()
		switch fr.Type {
		case "stdout", "stderr":
			s.chunks = append(s.chunks, fr)
		case "exit":
			s.exit = &fr
			return s
		default:
			t.Fatalf("frame %+v", fr)
		}
	}
}

func testProcessStreamErrors(t *testing.T, f *fixture) {
	// Bad query parameters and ids: plain HTTP 400 before the upgrade.
	for _, q := range []string{"?offset=-1", "?offset=x", "?offset=1.5", "?encoding=hex", "?encoding=TEXT"} {
		if status, code := dialStatus(t, f, f.base()+"/processes/any/stream"+q, f.key()); status != 400 || code != "invalid_request" {
			t.Errorf("%s: %d %s", q, status, code)
		}
	}
	if status, code := dialStatus(t, f, "/v1/capsules/cl-bad/processes/any/stream", f.key()); status != 400 || code != "invalid_request" {
		t.Errorf("bad capsule id: %d %s", status, code)
	}
	// Unknown selectors: fatal not_found after the upgrade.
	for _, sel := range []string{"no-such", "99999", "0", "bad%20tag"} {
		c := mustDial(t, f, f.base()+"/processes/"+sel+"/stream", f.key())
		c.expectFatal("not_found")
	}
}

var errNotYet = notYet{}

type notYet struct{}

func (notYet) Error() string { return "not yet" }
