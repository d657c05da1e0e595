package process

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// replayed is one data event of a replaying stream.
type replayed struct {
	data string
	end  uint64
}

func dataEvents(w *watcher) []replayed {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []replayed
	for _, ev := range w.events {
		if d := ev.GetData(); d != nil {
			out = append(out, replayed{string(d.GetStdout()) + string(d.GetStderr()) + string(d.GetPty()), d.GetEndOffset()})
		}
	}
	return out
}

func replayHdr(off uint64) map[string]string {
	return map[string]string{ReplayFromHeader: strconv.FormatUint(off, 10)}
}

func TestReplayExited(t *testing.T) {
	h := newHarness(t, Config{})
	// Separate writes, so the log holds three chunks: "abc" "def" "ghi".
	w := start(t, h.json, &process.StartRequest{Process: sh("printf abc; sleep 0.1; printf def >&2; sleep 0.1; printf ghi"), Tag: ptr("r1")}, nil)
	w.wait(t)

	tests := []struct {
		name string
		sel  *process.ProcessSelector
		from uint64
		want []replayed
	}{
		{"from 0", bySel(w.pid), 0, []replayed{{"abc", 3}, {"def", 6}, {"ghi", 9}}},
		{"cut inside a chunk", byTag("r1"), 2, []replayed{{"c", 3}, {"def", 6}, {"ghi", 9}}},
		{"chunk boundary", bySel(w.pid), 6, []replayed{{"ghi", 9}}},
		{"at the end", bySel(w.pid), 9, nil},
		{"beyond the end", bySel(w.pid), 1000, nil},
	}
	for name, c := range h.clients() {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				cw := connectTo(t, c, tt.sel, replayHdr(tt.from))
				end := cw.wait(t)
				if cw.pid != w.pid || end.GetExitCode() != 0 || !end.GetExited() {
					t.Fatalf("pid %d end %v err %v", cw.pid, end, cw.streamErr())
				}
				got := dataEvents(cw)
				if len(got) != len(tt.want) {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("event %d = %v, want %v", i, got[i], tt.want[i])
					}
				}
			})
		}
	}
	t.Run("stderr kept as stderr", func(t *testing.T) {
		cw := connectTo(t, h.bin, bySel(w.pid), replayHdr(0))
		cw.wait(t)
		if cw.stdout.String() != "abcghi" || cw.stderr.String() != "def" {
			t.Errorf("stdout %q stderr %q", cw.stdout.String(), cw.stderr.String())
		}
	})
	t.Run("standard Connect does not see exited records", func(t *testing.T) {
		cw := connectTo(t, h.json, bySel(w.pid), nil)
		wantCode(t, cw.streamErr(), connect.CodeNotFound, "not found")
	})
	t.Run("malformed offset", func(t *testing.T) {
		for _, v := range []string{"x", "-1", "1.5"} {
			cw := connectTo(t, h.json, bySel(w.pid), map[string]string{ReplayFromHeader: v})
			wantCode(t, cw.streamErr(), connect.CodeInvalidArgument, ReplayFromHeader)
		}
	})
}

func TestReplayLive(t *testing.T) {
	h := newHarness(t, Config{})
	w := start(t, h.bin, &process.StartRequest{Process: sh("printf abc; read x; printf def")}, nil)
	w.waitOutput(t, "abc")
	cw := connectTo(t, h.json, bySel(w.pid), replayHdr(1))
	cw.waitOutput(t, "bc")
	send(t, h.bin, w.pid, "\n")
	cw.wait(t)
	got := dataEvents(cw)
	want := []replayed{{"bc", 3}, {"def", 6}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestReplayEviction: only the last OutputLimit (default 1 MiB) bytes are
// kept; a replay from 0 starts at the oldest retained byte.
func TestReplayEviction(t *testing.T) {
	h := newHarness(t, Config{})
	// Deterministic output, so the test knows every byte without relying on
	// a live consumer keeping up.
	var seq strings.Builder
	for i := 1; i <= 250000; i++ {
		seq.WriteString(strconv.Itoa(i) + "\n")
	}
	full := []byte(seq.String())
	total := uint64(len(full))
	w := start(t, h.json, &process.StartRequest{Process: cmd("seq", "1", "250000"), Stdin: ptr(false)}, nil)
	if end := w.wait(t); end.GetExitCode() != 0 {
		t.Fatalf("end %v", end)
	}
	cw := connectTo(t, h.bin, bySel(w.pid), replayHdr(0))
	cw.wait(t)
	evs := dataEvents(cw)
	if len(evs) == 0 {
		t.Fatal("no replay")
	}
	first := evs[0].end - uint64(len(evs[0].data))
	if first != total-1<<20 {
		t.Errorf("replay starts at %d, want %d (gap shows through end_offset)", first, total-1<<20)
	}
	var got bytes.Buffer
	prev := first
	for _, e := range evs {
		if e.end != prev+uint64(len(e.data)) {
			t.Fatalf("end_offset %d after %d + %d bytes", e.end, prev, len(e.data))
		}
		prev = e.end
		got.WriteString(e.data)
	}
	if !bytes.Equal(got.Bytes(), full[total-1<<20:]) || prev != total {
		t.Errorf("replayed %d bytes ending at %d, want the last 1 MiB ending at %d", got.Len(), prev, total)
	}
}

func TestRetention(t *testing.T) {
	t.Run("expiry", func(t *testing.T) {
		h := newHarness(t, Config{Retention: 3 * time.Second})
		w := start(t, h.json, &process.StartRequest{Process: cmd("echo", "hi")}, nil)
		w.wait(t)
		if n := len(listAll(t, h.json, true)); n != 1 {
			t.Fatalf("%d records right after exit, want 1", n)
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(listAll(t, h.json, true)) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("record still listed long after its retention")
			}
			time.Sleep(50 * time.Millisecond)
		}
		cw := connectTo(t, h.json, bySel(w.pid), replayHdr(0))
		wantCode(t, cw.streamErr(), connect.CodeNotFound, "not found")
	})
	t.Run("total cap evicts oldest first", func(t *testing.T) {
		h := newHarness(t, Config{TotalRetained: 100})
		var pids []uint32
		for range 3 {
			w := start(t, h.json, &process.StartRequest{Process: sh("head -c 60 /dev/zero")}, nil)
			w.wait(t)
			pids = append(pids, w.pid)
		}
		list := listAll(t, h.json, true)
		if len(list) != 1 || list[0].GetPid() != pids[2] {
			t.Fatalf("retained %v, want only the newest (pid %d)", list, pids[2])
		}
	})
}

// TestRunningWinsOverExited: with replay, a selector matching both a running
// process and an exit record picks the running one.
func TestRunningWinsOverExited(t *testing.T) {
	h := newHarness(t, Config{})
	old := start(t, h.json, &process.StartRequest{Process: cmd("true"), Tag: ptr("dup")}, nil)
	old.wait(t)
	live := start(t, h.json, &process.StartRequest{Process: cmd("sleep", "100"), Tag: ptr("dup")}, nil)
	for _, sel := range []*process.ProcessSelector{byTag("dup"), bySel(live.pid)} {
		if sel.GetPid() != 0 {
			// Give the record the live pid, as after pid reuse.
			h.svc.mu.Lock()
			h.svc.exited[len(h.svc.exited)-1].pid = int(live.pid)
			h.svc.mu.Unlock()
		}
		p, err := h.svc.find(sel, true)
		if err != nil {
			t.Fatal(err)
		}
		if p.end != nil {
			t.Errorf("selector %v picked the exit record", sel)
		}
	}
	_ = kill(t, h.json, bySel(live.pid), process.Signal_SIGNAL_SIGKILL)
	live.wait(t)
}
