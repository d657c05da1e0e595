package process

import (
	"bytes"
	"context"
	"fmt"
	"go/parser"
	"go/printer"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// zombies returns the pids of unreaped children of this process.
func zombies() []int {
	var out []int
	self := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == self {
			pid, _ := strconv.Atoi(e.Name())
			out = append(out, pid)
		}
	}
	return out
}

func waitNoZombies(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(zombies()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unreaped children: %v", zombies())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoDoubleWait is the regression test for a process being waited for
// twice: many short processes race with concurrent kills, connects and
// lists. Every process must get exactly one end with a status that matches
// what happened, nothing may panic, and nothing may stay unreaped. Run it
// with -race.
func TestNoDoubleWait(t *testing.T) {
	h := newHarness(t, Config{Retention: time.Minute})
	const n = 150
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// Killers and connectors hammer whatever is running.
	for i := range 4 {
		wg.Go(func() {
			c := h.json
			if i%2 == 0 {
				c = h.bin
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, p := range listAll(t, c, false) {
					switch rand.IntN(3) {
					case 0:
						_ = kill(t, c, bySel(p.GetPid()), process.Signal_SIGNAL_SIGKILL)
					case 1:
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						st, err := c.Connect(ctx, connect.NewRequest(&process.ConnectRequest{Process: bySel(p.GetPid())}))
						if err == nil {
							for st.Receive() {
							}
							_ = st.Close()
						}
						cancel()
					default:
						_ = kill(t, c, bySel(p.GetPid()), process.Signal_SIGNAL_SIGTERM)
					}
				}
			}
		})
	}
	scripts := []string{"exit 0", "exit 7", "sleep 0.05", "sleep 0.05 & exit 1", "kill -KILL $$"}
	var starters sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		starters.Go(func() {
			c := h.bin
			if i%2 == 0 {
				c = h.json
			}
			st, err := c.Start(context.Background(), connect.NewRequest(&process.StartRequest{Process: sh(scripts[i%len(scripts)]), Stdin: ptr(false)}))
			if err != nil {
				errs <- err
				return
			}
			defer st.Close()
			var ends int
			var end *process.ProcessEvent_EndEvent
			for st.Receive() {
				if e := st.Msg().GetEvent().GetEnd(); e != nil {
					ends++
					end = e
				}
			}
			if st.Err() != nil || ends != 1 {
				errs <- fmt.Errorf("script %q: %d ends, err %v", scripts[i%len(scripts)], ends, st.Err())
				return
			}
			ok := end.GetStatus() == "signal: killed" || end.GetStatus() == "signal: terminated"
			switch i % len(scripts) {
			case 0, 2:
				ok = ok || end.GetStatus() == "exit status 0"
			case 1:
				ok = ok || end.GetStatus() == "exit status 7"
			case 3:
				ok = ok || end.GetStatus() == "exit status 1"
			}
			if !ok {
				errs <- fmt.Errorf("script %q ended with %v", scripts[i%len(scripts)], end)
			}
		})
	}
	starters.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitNoZombies(t)
	h.svc.reapMu.Lock()
	left := len(h.svc.children)
	h.svc.reapMu.Unlock()
	if left != 0 {
		t.Errorf("%d children still registered", left)
	}
	if got := len(listAll(t, h.json, true)); got != n {
		t.Errorf("%d exit records, want %d", got, n)
	}
}

// TestOrphansReaped: grandchildren orphaned by a user process are reparented
// to envd (subreaper here, PID 1 in a capsule) and reaped.
func TestOrphansReaped(t *testing.T) {
	h := newHarness(t, Config{})
	marker := "0.1424"
	w := start(t, h.json, &process.StartRequest{Process: sh("for i in 1 2 3 4 5; do (sleep " + marker + " &) ; done; exit 0"), Stdin: ptr(false)}, nil)
	w.wait(t)
	waitGone(t, marker) // the orphans have exited: now they are zombies or reaped
	waitNoZombies(t)
}

// TestNoOtherWaiters keeps the reaper the only waiter: the package must not
// use os/exec or os.Process, whose Wait would race with it.
func TestNoOtherWaiters(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, f, src, 0) // comments dropped
		if err != nil {
			t.Fatal(err)
		}
		var code bytes.Buffer
		if err := printer.Fprint(&code, fset, file); err != nil {
			t.Fatal(err)
		}
		src = code.Bytes()
		for _, imp := range file.Imports {
			if imp.Path.Value == `"os/exec"` {
				t.Errorf("%s imports os/exec", f)
			}
		}
		for _, bad := range []string{"os.StartProcess", "os.FindProcess", "syscall.Wait4", ".Process.Wait"} {
			if strings.Contains(string(src), bad) {
				t.Errorf("%s uses %s", f, bad)
			}
		}
		if strings.Contains(string(src), "unix.Wait4") && f != "reaper.go" {
			t.Errorf("%s waits for children outside the reaper", f)
		}
	}
}
