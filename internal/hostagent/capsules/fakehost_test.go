package capsules

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/hostagent/images"
	"github.com/wrenn/wrenn/internal/hostagent/network"
	"github.com/wrenn/wrenn/internal/hostagent/runtime/runtimetest"
)

// The production network and image store are what the agent's interfaces
// describe.
var (
	_ Network = (*network.Manager)(nil)
	_ Images  = (*images.Store)(nil)
)

// fakeHost is an Agent on fakes of everything it runs on (runtimetest): no
// root, no runsc, no network namespaces. A fake capsule's envd is a
// loopback HTTP server that answers while the fake runtime runs it.
type fakeHost struct {
	t    *testing.T
	dir  string // the agent's data directory
	envd string // the envd binary the agent installs
	rt   *runtimetest.Fake
	net  *runtimetest.Network
	img  *runtimetest.Images
	mod  func(*Config)
	a    *Agent

	mu       sync.Mutex
	stopping []string // ids Config.Stopping was called with
}

// newFakeHost starts an Agent on fakes; mod adjusts its Config. When the
// test ends the agent is closed, every fake network is torn down and no
// goroutine the test started may be left.
func newFakeHost(t *testing.T, mod func(*Config)) *fakeHost {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		envdclient.CloseIdle()
		goleak.VerifyNone(t, ignore)
	})
	rt := runtimetest.New()
	h := &fakeHost{
		t:   t,
		dir: t.TempDir(),
		rt:  rt,
		net: runtimetest.NewNetwork(rt),
		img: runtimetest.NewImages("base", "minimal"),
		mod: mod,
	}
	t.Cleanup(h.net.Close)
	h.envd = filepath.Join(t.TempDir(), "envd")
	writeFile(t, h.envd, "#!/bin/true\n")
	h.start()
	return h
}

func (h *fakeHost) config() Config {
	cfg := Config{
		DataDir: h.dir, Runtime: h.rt, Network: h.net, Images: h.img, Envd: h.envd,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		ReadyTimeout: 300 * time.Millisecond,
		IdleCheck:    20 * time.Millisecond,
		MetricsEvery: 50 * time.Millisecond,
		NetworkGrace: -1,
		Versions:     map[string]string{MetaAgentVersion: "test", MetaKernelVersion: "6.0.0-test"},
		Stopping: func(id string) {
			h.mu.Lock()
			h.stopping = append(h.stopping, id)
			h.mu.Unlock()
		},
	}
	if h.mod != nil {
		h.mod(&cfg)
	}
	return cfg
}

// start runs a new Agent on the host's data directory and fakes.
func (h *fakeHost) start() {
	h.t.Helper()
	a, err := New(context.Background(), h.config())
	if err != nil {
		h.t.Fatal(err)
	}
	h.a = a
	h.t.Cleanup(a.Close)
}

// restart closes the agent, runs between (the host while no agent runs)
// and starts a new agent on the same data directory and fakes, as after an
// agent crash or upgrade.
func (h *fakeHost) restart(between func()) {
	h.t.Helper()
	h.a.Close()
	if between != nil {
		between()
	}
	h.start()
}

// create makes a running capsule from the "base" image.
func (h *fakeHost) create(id string) Info {
	h.t.Helper()
	info, err := h.a.Create(context.Background(), CreateParams{ID: id})
	if err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
	return info
}

func (h *fakeHost) pause(id string) {
	h.t.Helper()
	if err := h.a.Pause(context.Background(), id); err != nil {
		h.t.Fatalf("pause %s: %v", id, err)
	}
}

func (h *fakeHost) resume(id string) Info {
	h.t.Helper()
	info, err := h.a.Resume(context.Background(), ResumeParams{ID: id})
	if err != nil {
		h.t.Fatalf("resume %s: %v", id, err)
	}
	return info
}

// status returns the capsule's status, or "" when the agent has none.
func (h *fakeHost) status(id string) Status {
	info, err := h.a.Info(id)
	if err != nil {
		return ""
	}
	return info.Status
}

// record reads capsule id's record from disk.
func (h *fakeHost) record(id string) record {
	h.t.Helper()
	var r record
	if err := readJSON(h.a.dirs.recordFile(id), &r); err != nil {
		h.t.Fatalf("record of %s: %v", id, err)
	}
	return r
}

// setRecordStatus rewrites the status in capsule id's record on disk, as
// an agent that died in the middle of an operation left it.
func (h *fakeHost) setRecordStatus(id string, s Status) {
	h.t.Helper()
	r := h.record(id)
	r.Status = s
	if err := writeJSON(h.a.dirs.recordFile(id), r); err != nil {
		h.t.Fatal(err)
	}
}

// wantCapsule checks the agent's, the disk's, the runtime's and the
// network's view of capsule id: st "" means gone everywhere.
func (h *fakeHost) wantCapsule(id string, st Status) {
	h.t.Helper()
	if got := h.status(id); got != st {
		h.t.Errorf("%s is %q, want %q", id, got, st)
	}
	snapshot := exists(h.a.dirs.snapshot(id))
	switch st {
	case "":
		if exists(h.a.dirs.capsule(id)) {
			h.t.Errorf("%s: directory %s left", id, h.a.dirs.capsule(id))
		}
		if got := h.rt.State(id); got != runtimetest.StateGone {
			h.t.Errorf("%s: runtime still holds it (%s)", id, got)
		}
		h.eventuallyNoNetwork(id)
	case StatusRunning:
		if r := h.record(id); r.Status != StatusRunning || r.HostIP == "" {
			h.t.Errorf("%s: record says %q at %q, want running with an address", id, r.Status, r.HostIP)
		}
		if got := h.rt.State(id); got != runtimetest.StateRunning {
			h.t.Errorf("%s: runtime state %q, want running", id, got)
		}
		if !slices.Contains(h.net.IDs(), id) {
			h.t.Errorf("%s: running without a network", id)
		}
		if snapshot {
			h.t.Errorf("%s: running with a pause snapshot left", id)
		}
	case StatusPaused:
		if r := h.record(id); r.Status != StatusPaused || r.HostIP != "" {
			h.t.Errorf("%s: record says %q at %q, want paused without an address", id, r.Status, r.HostIP)
		}
		if got := h.rt.State(id); got == runtimetest.StateRunning {
			h.t.Errorf("%s: paused but the runtime runs it", id)
		}
		if !snapshot || !exists(filepath.Join(h.a.dirs.snapshot(id), runtimetest.CheckpointFile)) {
			h.t.Errorf("%s: paused without a snapshot", id)
		}
		if exists(h.a.dirs.snapshotTmp(id)) {
			h.t.Errorf("%s: paused with %s left", id, h.a.dirs.snapshotTmp(id))
		}
		h.eventuallyNoNetwork(id)
	}
}

// eventuallyNoNetwork waits for capsule id's network to be torn down: a
// paused capsule's goes after Config.NetworkGrace, on a timer.
func (h *fakeHost) eventuallyNoNetwork(id string) {
	h.t.Helper()
	eventually(h.t, id+" has no network", func() bool { return !slices.Contains(h.net.IDs(), id) })
}

// stopped returns the ids Config.Stopping was called with.
func (h *fakeHost) stopped() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.stopping)
}

// eventually waits up to 5 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mkdirs creates directories for a test's scenario.
func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
}
