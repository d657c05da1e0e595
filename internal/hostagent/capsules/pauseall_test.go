package capsules

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// fakeRuntime runs nothing: it records pauses and lists the ids it was
// told are alive.
type fakeRuntime struct {
	mu       sync.Mutex
	alive    []string
	paused   []string
	failFor  string
	pauseErr error
}

func (f *fakeRuntime) Create(context.Context, runtime.Spec) error { return nil }
func (f *fakeRuntime) Restore(context.Context, runtime.Spec, runtime.Snapshot) error {
	return nil
}

func (f *fakeRuntime) Pause(_ context.Context, id string, snap runtime.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == f.failFor {
		return f.pauseErr
	}
	f.paused = append(f.paused, id)
	f.alive = slices.DeleteFunc(f.alive, func(s string) bool { return s == id })
	return os.WriteFile(filepath.Join(snap.Dir, "checkpoint.img"), []byte("state"), 0o600)
}

func (f *fakeRuntime) Destroy(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alive = slices.DeleteFunc(f.alive, func(s string) bool { return s == id })
	return nil
}

func (f *fakeRuntime) Stats(context.Context, string) (runtime.Stats, error) {
	return runtime.Stats{At: time.Now()}, nil
}

func (f *fakeRuntime) List(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.alive), nil
}

type fakeNetwork struct{}

func (fakeNetwork) Setup(context.Context, string, bool) (runtime.Network, string, error) {
	return runtime.Network{}, "", errors.New("fake network creates nothing")
}
func (fakeNetwork) Teardown(context.Context, string) error              { return nil }
func (fakeNetwork) Cleanup(context.Context, func(id string) bool) error { return nil }

type fakeImages struct{}

func (fakeImages) Ensure(context.Context, string) (runtime.Image, error) {
	return runtime.Image{}, errors.New("fake images build nothing")
}

func TestPauseAllPausesRunningCapsules(t *testing.T) {
	// envd of every capsule: answers /snapshot/prepare.
	var prepared sync.Map
	envd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/snapshot/prepare" {
			prepared.Store(r.Host, true)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.NotFound(w, r)
	}))
	defer envd.Close()
	hostAddr := envd.Listener.Addr().String()

	dir := t.TempDir()
	const (
		run1    = "cl-0000000000000000000000001"
		run2    = "cl-0000000000000000000000002"
		failing = "cl-0000000000000000000000003"
		paused  = "cl-0000000000000000000000004"
	)
	now := time.Now().UTC()
	for _, r := range []record{
		{ID: run1, Status: StatusRunning, HostIP: hostAddr},
		{ID: run2, Status: StatusRunning, HostIP: hostAddr},
		{ID: failing, Status: StatusRunning, HostIP: hostAddr},
		{ID: paused, Status: StatusPaused},
	} {
		r.CreatedAt, r.LastActiveAt = now, now
		writeFile(t, filepath.Join(dir, "capsules", r.ID, "capsule.json"), mustJSON(t, r))
	}
	writeFile(t, filepath.Join(dir, "capsules", paused, "snapshot", "checkpoint.img"), "state")
	envdBin := filepath.Join(t.TempDir(), "envd")
	writeFile(t, envdBin, "#!/bin/true\n")

	var stopping []string
	var stopMu sync.Mutex
	rt := &fakeRuntime{alive: []string{run1, run2, failing}, failFor: failing, pauseErr: errors.New("checkpoint failed")}
	a, err := New(context.Background(), Config{
		DataDir: dir, Runtime: rt, Network: fakeNetwork{}, Images: fakeImages{}, Envd: envdBin,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReadyTimeout: 200 * time.Millisecond, NetworkGrace: -1,
		Stopping: func(id string) {
			stopMu.Lock()
			stopping = append(stopping, id)
			stopMu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	err = a.PauseAll(context.Background())
	if err == nil || !errors.Is(err, rt.pauseErr) {
		t.Fatalf("PauseAll error %v, want the failing capsule's", err)
	}
	infos, auto, _ := a.List(context.Background())
	status := map[string]Status{}
	for _, i := range infos {
		status[i.ID] = i.Status
	}
	want := map[string]Status{run1: StatusPaused, run2: StatusPaused, failing: StatusRunning, paused: StatusPaused}
	for id, st := range want {
		if status[id] != st {
			t.Errorf("%s is %q, want %q", id, status[id], st)
		}
	}
	slices.Sort(auto)
	if !slices.Equal(auto, []string{run1, run2}) {
		t.Errorf("auto-paused %v, want %v", auto, []string{run1, run2})
	}
	for _, id := range []string{run1, run2} {
		if _, err := os.Stat(filepath.Join(dir, "capsules", id, "snapshot", "checkpoint.img")); err != nil {
			t.Errorf("%s snapshot: %v", id, err)
		}
	}
	if _, ok := prepared.Load(hostAddr); !ok {
		t.Error("envd /snapshot/prepare was not called")
	}
	stopMu.Lock()
	slices.Sort(stopping)
	if !slices.Equal(stopping, []string{run1, run2, failing}) {
		t.Errorf("Stopping called for %v", stopping)
	}
	stopMu.Unlock()

	// Nothing left running but the capsule that cannot pause: a second
	// round only retries that one.
	rt.mu.Lock()
	rt.failFor = ""
	rt.mu.Unlock()
	if err := a.PauseAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if info, _ := a.Info(failing); info.Status != StatusPaused {
		t.Fatalf("%s is %q after the retry", failing, info.Status)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if got := len(rt.paused); got != 3 {
		t.Fatalf("runtime paused %d times, want 3", got)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
