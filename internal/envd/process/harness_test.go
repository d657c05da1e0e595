package process

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/api/envd/process/processconnect"
	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) {
	// os/signal's delivery goroutine lives for the whole process once any
	// signal was ever subscribed to.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("os/signal.signal_recv"), goleak.IgnoreTopFunction("os/signal.loop"))
}

// requireRoot skips tests that spawn processes as other users or change
// oom scores; CI and the dev machine run as root.
func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
}

// harness is a Service behind a real HTTP server with two clients: JSON over
// HTTP/1.1 (like the JS SDK) and binary over h2c (like the host agent).
type harness struct {
	svc   *Service
	store *defaults.Store
	json  processconnect.ProcessClient
	bin   processconnect.ProcessClient
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	requireRoot(t)
	store := defaults.New(map[string]string{"PATH": fallbackPATH})
	cfg.Defaults = store
	if testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(processconnect.NewProcessHandler(svc))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	h1 := &http.Transport{}
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(func() {
		svc.Close()
		srv.CloseClientConnections()
		srv.Close()
		h1.CloseIdleConnections()
		h2.CloseIdleConnections()
	})
	return &harness{
		svc:   svc,
		store: store,
		json:  processconnect.NewProcessClient(&http.Client{Transport: h1}, srv.URL, connect.WithProtoJSON()),
		bin:   processconnect.NewProcessClient(&http.Client{Transport: h2}, srv.URL),
	}
}

// clients returns both clients by name, for table tests over the codecs.
func (h *harness) clients() map[string]processconnect.ProcessClient {
	return map[string]processconnect.ProcessClient{"json": h.json, "binary": h.bin}
}

func basicAuth(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"))
}

func cmd(name string, args ...string) *process.ProcessConfig {
	return &process.ProcessConfig{Cmd: name, Args: args}
}

func sh(script string) *process.ProcessConfig { return cmd("/bin/sh", "-c", script) }

func ptr[T any](v T) *T { return &v }

// watcher collects the events of one Start or Connect stream in the
// background.
type watcher struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	changed    chan struct{}
	events     []*process.ProcessEvent
	out        bytes.Buffer // every data payload, in order
	stdout     bytes.Buffer
	stderr     bytes.Buffer
	pid        uint32
	end        *process.ProcessEvent_EndEvent
	keepalives int
	err        error
}

type eventMsg interface{ GetEvent() *process.ProcessEvent }

func newWatcher(cancel context.CancelFunc) *watcher {
	return &watcher{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
}

func (w *watcher) add(ev *process.ProcessEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, ev)
	switch e := ev.GetEvent().(type) {
	case *process.ProcessEvent_Start:
		w.pid = e.Start.GetPid()
	case *process.ProcessEvent_Data:
		d := e.Data
		w.out.Write(d.GetStdout())
		w.out.Write(d.GetStderr())
		w.out.Write(d.GetPty())
		w.stdout.Write(d.GetStdout())
		w.stderr.Write(d.GetStderr())
	case *process.ProcessEvent_End:
		w.end = e.End
	case *process.ProcessEvent_Keepalive:
		w.keepalives++
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

// run drains st; it is started in a goroutine owned by the watcher (done).
func watchStream[T any](w *watcher, st *connect.ServerStreamForClient[T]) {
	defer close(w.done)
	defer st.Close()
	for st.Receive() {
		w.add(any(st.Msg()).(eventMsg).GetEvent())
	}
	w.mu.Lock()
	w.err = st.Err()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// start runs Start and returns once the start event arrived (or the stream
// failed, see w.err).
func start(t testing.TB, c processconnect.ProcessClient, msg *process.StartRequest, hdr map[string]string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := connect.NewRequest(msg)
	for k, v := range hdr {
		req.Header().Set(k, v)
	}
	st, err := c.Start(ctx, req)
	w := newWatcher(cancel)
	if err != nil {
		w.err = err
		close(w.done)
		cancel()
		return w
	}
	go watchStream(w, st)
	t.Cleanup(func() { cancel(); <-w.done })
	w.waitFor(t, "start event", func() bool { return w.pid != 0 || w.err != nil })
	return w
}

// connectTo runs Connect and returns once the start event arrived.
func connectTo(t testing.TB, c processconnect.ProcessClient, sel *process.ProcessSelector, hdr map[string]string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req := connect.NewRequest(&process.ConnectRequest{Process: sel})
	for k, v := range hdr {
		req.Header().Set(k, v)
	}
	st, err := c.Connect(ctx, req)
	w := newWatcher(cancel)
	if err != nil {
		w.err = err
		close(w.done)
		cancel()
		return w
	}
	go watchStream(w, st)
	t.Cleanup(func() { cancel(); <-w.done })
	// A stream that fails (not found, ...) ends without a start event.
	w.waitFor(t, "start event", func() bool { return w.pid != 0 || w.err != nil })
	return w
}

// waitFor waits until cond (called with w.mu held) holds, or the stream
// ended; it fails the test after 30 s.
func (w *watcher) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		w.mu.Lock()
		ok, ch := cond(), w.changed
		w.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-w.done:
			w.mu.Lock()
			ok := cond()
			w.mu.Unlock()
			if !ok {
				t.Fatalf("stream ended (err %v) before %s; output %q", w.err, what, w.output())
			}
			return
		case <-deadline:
			t.Fatalf("timed out waiting for %s; output so far %q", what, w.output())
		}
	}
}

func (w *watcher) waitOutput(t testing.TB, substr string) {
	t.Helper()
	w.waitFor(t, "output "+strconvQuote(substr), func() bool { return strings.Contains(w.out.String(), substr) })
}

// wait waits for the stream to finish and returns its end event.
func (w *watcher) wait(t testing.TB) *process.ProcessEvent_EndEvent {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("stream did not finish; output %q", w.output())
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.end
}

func (w *watcher) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

func (w *watcher) streamErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func strconvQuote(s string) string { return "\"" + s + "\"" }

// wantCode fails unless err is a Connect error with code and a message
// containing msg.
func wantCode(t testing.TB, err error, code connect.Code, msg string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want Connect code %v", err, code)
	}
	if ce.Code() != code || !strings.Contains(ce.Message(), msg) {
		t.Fatalf("error = %v (%v), want code %v with message containing %q", ce, ce.Code(), code, msg)
	}
}

func bySel(pid uint32) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}
}

func byTag(tag string) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: tag}}
}

func kill(t testing.TB, c processconnect.ProcessClient, sel *process.ProcessSelector, sig process.Signal) error {
	t.Helper()
	_, err := c.SendSignal(context.Background(), connect.NewRequest(&process.SendSignalRequest{Process: sel, Signal: sig}))
	return err
}
