package capsules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
	"github.com/wrenn/wrenn/internal/hostagent/runtime/runtimetest"
)

var errBoom = errors.New("boom")

// Capsule ids of the tests on fakes.
const (
	idA = "cl-fake00000000000000000000a"
	idB = "cl-fake00000000000000000000b"
	idC = "cl-fake00000000000000000000c"
)

func TestFakeLifecycle(t *testing.T) {
	h := newFakeHost(t, nil)
	ctx := context.Background()

	info, err := h.a.Create(ctx, CreateParams{
		ID: idA, TemplateID: "minimal", TeamID: "team1", TimeoutSec: 3600,
		DefaultUser: "user", DefaultEnv: map[string]string{"A": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.Status != StatusRunning || info.HostIP == "" || info.VCPUs != 1 || info.MemoryMB != 512 || info.DiskMB != 2048 {
		t.Errorf("created %+v", info)
	}
	wantMeta := map[string]string{
		MetaAgentVersion: "test", MetaKernelVersion: "6.0.0-test",
		MetaEnvdVersion: runtimetest.EnvdVersion, MetaImageID: runtimetest.Image("minimal").ID,
	}
	if !maps.Equal(info.Metadata, wantMeta) {
		t.Errorf("metadata %v, want %v", info.Metadata, wantMeta)
	}
	h.wantCapsule(idA, StatusRunning)
	spec, _ := h.rt.Spec(idA)
	if spec.Image != runtimetest.Image("minimal") || spec.MetadataDir != h.a.dirs.metaDir(idA) ||
		spec.Network.NetnsPath == "" || filepath.Dir(filepath.Dir(spec.Envd)) != h.a.dirs.envd() {
		t.Errorf("runtime spec %+v", spec)
	}
	var meta metadata
	if err := readJSON(filepath.Join(h.a.dirs.metaDir(idA), "metadata.json"), &meta); err != nil ||
		meta != (metadata{SandboxID: idA, TemplateID: "minimal"}) {
		t.Errorf("metadata.json %+v, %v", meta, err)
	}
	inits := h.net.Inits(idA)
	if len(inits) != 1 || inits[0].DefaultUser != "user" || !maps.Equal(inits[0].EnvVars, map[string]string{"A": "1"}) {
		t.Errorf("envd /init calls %+v", inits)
	}

	if err := h.a.Pause(ctx, idA); err != nil {
		t.Fatal(err)
	}
	h.wantCapsule(idA, StatusPaused)
	if n := h.net.Prepares(idA); n != 1 {
		t.Errorf("envd /snapshot/prepare called %d times, want 1", n)
	}
	if got := h.stopped(); !slices.Equal(got, []string{idA}) {
		t.Errorf("Stopping called for %v", got)
	}

	info, err = h.a.Resume(ctx, ResumeParams{ID: idA, TimeoutSec: 60, DefaultEnv: map[string]string{"B": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if info.TimeoutSec != 60 || !maps.Equal(info.DefaultEnv, map[string]string{"A": "1", "B": "2"}) {
		t.Errorf("resumed %+v", info)
	}
	h.wantCapsule(idA, StatusRunning)
	if from := h.rt.RestoredFrom(idA); from != idA {
		t.Errorf("restored from %q's snapshot", from)
	}
	inits = h.net.Inits(idA)
	if len(inits) != 2 || !maps.Equal(inits[1].EnvVars, map[string]string{"A": "1", "B": "2"}) {
		t.Errorf("envd /init calls %+v", inits)
	}

	if err := h.a.Destroy(ctx, idA); err != nil {
		t.Fatal(err)
	}
	if _, err := h.a.Info(idA); !errors.Is(err, ErrNotFound) {
		t.Errorf("Info after destroy: %v", err)
	}
	h.wantCapsule(idA, "")
	if got := h.stopped(); !slices.Equal(got, []string{idA, idA}) {
		t.Errorf("Stopping called for %v", got)
	}
}

// TestFakeLifecycleErrors checks that each refused operation returns its
// error kind and changes nothing.
func TestFakeLifecycleErrors(t *testing.T) {
	h := newFakeHost(t, nil)
	ctx := context.Background()
	const running, paused, unknown = idA, idB, "cl-fake0000000000000000nobody"
	h.create(running)
	h.create(paused)
	h.pause(paused)
	if _, err := h.a.Snapshot(ctx, paused, "", "tpl"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"create without id", func() error { _, err := h.a.Create(ctx, CreateParams{}); return err }, ErrInvalid},
		{"create existing", func() error { _, err := h.a.Create(ctx, CreateParams{ID: running}); return err }, ErrExists},
		{"create existing paused", func() error { _, err := h.a.Create(ctx, CreateParams{ID: paused}); return err }, ErrExists},
		{"create from unknown template", func() error {
			_, err := h.a.Create(ctx, CreateParams{ID: idC, TemplateID: "nonesuch"})
			return err
		}, ErrTemplateGone},
		{"create from bad template name", func() error {
			_, err := h.a.Create(ctx, CreateParams{ID: idC, TemplateID: "../etc"})
			return err
		}, ErrInvalid},
		{"pause unknown", func() error { return h.a.Pause(ctx, unknown) }, ErrNotFound},
		{"pause paused", func() error { return h.a.Pause(ctx, paused) }, ErrState},
		{"resume unknown", func() error { _, err := h.a.Resume(ctx, ResumeParams{ID: unknown}); return err }, ErrNotFound},
		{"resume running", func() error { _, err := h.a.Resume(ctx, ResumeParams{ID: running}); return err }, ErrState},
		{"destroy unknown", func() error { return h.a.Destroy(ctx, unknown) }, ErrNotFound},
		{"ping unknown", func() error { return h.a.Ping(ctx, unknown) }, ErrNotFound},
		{"envd of paused", func() error { _, _, _, err := h.a.Envd(ctx, paused); return err }, ErrState},
		{"envd of unknown", func() error { _, _, _, err := h.a.Envd(ctx, unknown); return err }, ErrNotFound},
		{"snapshot unknown", func() error { _, err := h.a.Snapshot(ctx, unknown, "", "tpl2"); return err }, ErrNotFound},
		{"snapshot to bad name", func() error { _, err := h.a.Snapshot(ctx, running, "", "a/b"); return err }, ErrInvalid},
		{"snapshot to bad team", func() error { _, err := h.a.Snapshot(ctx, running, "..", "tpl2"); return err }, ErrInvalid},
		{"snapshot to existing template", func() error { _, err := h.a.Snapshot(ctx, running, "", "tpl"); return err }, ErrExists},
		{"flatten paused", func() error { _, err := h.a.Flatten(ctx, paused, "", "flat"); return err }, ErrState},
		{"flatten unknown", func() error { _, err := h.a.Flatten(ctx, unknown, "", "flat"); return err }, ErrNotFound},
		{"flatten to existing template", func() error { _, err := h.a.Flatten(ctx, running, "", "tpl"); return err }, ErrExists},
		{"delete unknown template", func() error { return h.a.DeleteTemplate(ctx, "", "nonesuch") }, ErrTemplateGone},
		{"delete bad template name", func() error { return h.a.DeleteTemplate(ctx, "", "..") }, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			h.t = t
			h.wantCapsule(running, StatusRunning)
			h.wantCapsule(paused, StatusPaused)
			h.wantCapsule(idC, "")
			if ids := h.rt.IDs(); !slices.Equal(ids, []string{running, paused}) {
				t.Errorf("runtime holds %v", ids)
			}
		})
	}
}

// TestFakeCreateFailureCleansUp fails each step of a create and checks
// that nothing is left behind and the id can be used again.
func TestFakeCreateFailureCleansUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		template string
		inject   func(h *fakeHost)
		want     error
	}{
		{"image", "minimal", func(h *fakeHost) { h.img.FailNext(errBoom) }, ErrTemplateGone},
		{"network", "", func(h *fakeHost) { h.net.FailNext(runtimetest.NetSetup, errBoom) }, errBoom},
		{"runtime create", "", func(h *fakeHost) { h.rt.FailNext(runtimetest.OpCreate, errBoom) }, errBoom},
		{"runtime restore", "tpl", func(h *fakeHost) { h.rt.FailNext(runtimetest.OpRestore, errBoom) }, errBoom},
		{"envd never ready", "", func(h *fakeHost) { h.net.Wedge(idA, true) }, context.DeadlineExceeded},
		{"envd never ready after a restore", "tpl", func(h *fakeHost) { h.net.Wedge(idA, true) }, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			ctx := context.Background()
			if tc.template == "tpl" {
				h.create(idB)
				if _, err := h.a.Snapshot(ctx, idB, "", "tpl"); err != nil {
					t.Fatal(err)
				}
			}
			tc.inject(h)
			_, err := h.a.Create(ctx, CreateParams{ID: idA, TemplateID: tc.template})
			if !errors.Is(err, tc.want) {
				t.Fatalf("create error %v, want %v", err, tc.want)
			}
			h.wantCapsule(idA, "")
			h.net.Wedge(idA, false)
			h.create(idA)
			h.wantCapsule(idA, StatusRunning)
		})
	}
}

// TestFakePauseFailureKeepsRunning: a runtime that cannot pause leaves the
// capsule running, envd re-initialised, and no snapshot.
func TestFakePauseFailureKeepsRunning(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create(idA)
	h.rt.FailNext(runtimetest.OpPause, errBoom)
	if err := h.a.Pause(context.Background(), idA); !errors.Is(err, errBoom) {
		t.Fatalf("pause error %v", err)
	}
	h.wantCapsule(idA, StatusRunning)
	if exists(h.a.dirs.snapshotTmp(idA)) {
		t.Error("failed pause left its snapshot directory")
	}
	if n := len(h.net.Inits(idA)); n != 2 {
		t.Errorf("envd initialised %d times, want 2 (create, failed pause)", n)
	}
	h.pause(idA)
	h.wantCapsule(idA, StatusPaused)
}

// TestFakeResumeFailureStaysPaused fails each step of a resume: the capsule
// stays paused with its snapshot, and nothing runs.
func TestFakeResumeFailureStaysPaused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(h *fakeHost)
		want   error
	}{
		{"network", func(h *fakeHost) { h.net.FailNext(runtimetest.NetSetup, errBoom) }, errBoom},
		{"runtime restore", func(h *fakeHost) { h.rt.FailNext(runtimetest.OpRestore, errBoom) }, errBoom},
		{"envd never ready", func(h *fakeHost) { h.net.Wedge(idA, true) }, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			h.create(idA)
			h.pause(idA)
			h.eventuallyNoNetwork(idA)
			tc.inject(h)
			if _, err := h.a.Resume(context.Background(), ResumeParams{ID: idA, TimeoutSec: 77}); !errors.Is(err, tc.want) {
				t.Fatalf("resume error %v, want %v", err, tc.want)
			}
			h.wantCapsule(idA, StatusPaused)
			if got := h.rt.State(idA); got != runtimetest.StateGone {
				t.Errorf("runtime state %q after a failed resume", got)
			}
			h.net.Wedge(idA, false)
			h.resume(idA)
			h.wantCapsule(idA, StatusRunning)
		})
	}
}

// TestFakeNetworkKeptForQuickResume: within the grace period a resume
// takes the paused capsule's network back instead of building one.
func TestFakeNetworkKeptForQuickResume(t *testing.T) {
	h := newFakeHost(t, func(c *Config) { c.NetworkGrace = time.Hour })
	before := h.create(idA)
	h.pause(idA)
	if !slices.Equal(h.net.IDs(), []string{idA}) {
		t.Fatalf("networks %v after pause, want the paused capsule's kept", h.net.IDs())
	}
	after := h.resume(idA)
	if after.HostIP != before.HostIP || h.net.Setups() != 1 {
		t.Errorf("resume built a network: %s → %s, %d setups", before.HostIP, after.HostIP, h.net.Setups())
	}
	h.pause(idA)
	if err := h.a.Destroy(context.Background(), idA); err != nil {
		t.Fatal(err)
	}
	h.wantCapsule(idA, "")
}

func TestFakeSnapshotTemplate(t *testing.T) {
	h := newFakeHost(t, nil)
	ctx := context.Background()
	if _, err := h.a.Create(ctx, CreateParams{ID: idA, VCPUs: 2, MemoryMB: 1024, DefaultUser: "tpl-user",
		DefaultEnv: map[string]string{"FROM": "template", "X": "1"}}); err != nil {
		t.Fatal(err)
	}
	size, err := h.a.Snapshot(ctx, idA, "team1", "tpl1")
	if err != nil {
		t.Fatal(err)
	}
	if size != int64(len(idA)) {
		t.Errorf("template size %d, want the fake checkpoint's %d", size, len(idA))
	}
	h.wantCapsule(idA, StatusPaused)
	tdir := h.a.dirs.template("team1", "tpl1")
	if !exists(filepath.Join(tdir, "template.json")) || !exists(filepath.Join(tdir, "snapshot", runtimetest.CheckpointFile)) {
		t.Fatalf("template %s incomplete", tdir)
	}

	// A capsule from the template restores its snapshot under a new id and
	// takes its settings where the request leaves them unset.
	info, err := h.a.Create(ctx, CreateParams{ID: idB, TeamID: "team1", TemplateID: "tpl1", DefaultEnv: map[string]string{"X": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if from := h.rt.RestoredFrom(idB); from != idA {
		t.Errorf("%s restored from %q's snapshot, want %s's", idB, from, idA)
	}
	if info.VCPUs != 2 || info.MemoryMB != 1024 || info.DefaultUser != "tpl-user" ||
		!maps.Equal(info.DefaultEnv, map[string]string{"FROM": "template", "X": "2"}) {
		t.Errorf("capsule from template: %+v", info)
	}
	h.wantCapsule(idB, StatusRunning)

	// The template outlives its source's snapshot: resuming the source
	// removes that.
	h.resume(idA)
	eventually(t, "the used snapshot is removed", func() bool {
		old, _ := filepath.Glob(h.a.dirs.snapshot(idA) + ".old-*")
		return len(old) == 0
	})
	if _, err := h.a.Create(ctx, CreateParams{ID: idC, TeamID: "team1", TemplateID: "tpl1"}); err != nil {
		t.Fatal(err)
	}
	h.wantCapsule(idC, StatusRunning)

	// Another team does not see it.
	if _, err := h.a.Create(ctx, CreateParams{ID: "cl-fake0000000000000000other", TeamID: "team2", TemplateID: "tpl1"}); !errors.Is(err, ErrTemplateGone) {
		t.Errorf("create from another team's template: %v", err)
	}
	if err := h.a.DeleteTemplate(ctx, "team1", "tpl1"); err != nil {
		t.Fatal(err)
	}
	if exists(tdir) {
		t.Error("template directory left")
	}
	h.wantCapsule(idB, StatusRunning)
}

func TestFakeFlatten(t *testing.T) {
	h := newFakeHost(t, nil)
	ctx := context.Background()
	if _, err := h.a.Create(ctx, CreateParams{ID: idA, TemplateID: "minimal", DefaultUser: "flat-user"}); err != nil {
		t.Fatal(err)
	}
	size, err := h.a.Flatten(ctx, idA, "", "flat1")
	if err != nil {
		t.Fatal(err)
	}
	if size == 0 {
		t.Error("flattened image has no size")
	}
	h.wantCapsule(idA, "")
	rootfs := filepath.Join(h.a.dirs.template("", "flat1"), "rootfs")
	if !exists(filepath.Join(rootfs, runtimetest.RootfsFile)) {
		t.Fatalf("no flattened root filesystem in %s", rootfs)
	}

	info, err := h.a.Create(ctx, CreateParams{ID: idB, TemplateID: "flat1"})
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := h.rt.Spec(idB)
	if spec.Image.Path != rootfs || h.rt.RestoredFrom(idB) != "" || info.DefaultUser != "flat-user" {
		t.Errorf("capsule from a flattened template: image %+v, restored from %q, %+v", spec.Image, h.rt.RestoredFrom(idB), info)
	}
	h.wantCapsule(idB, StatusRunning)

	// A runtime that cannot flatten says so.
	h2 := newFakeHost(t, func(c *Config) { c.Runtime = struct{ runtime.Runtime }{c.Runtime} })
	h2.create(idC)
	if _, err := h2.a.Flatten(ctx, idC, "", "flat2"); !errors.Is(err, ErrState) {
		t.Errorf("flatten on a runtime without Flattener: %v", err)
	}
	h2.wantCapsule(idC, StatusRunning)
}

// TestFakeIdleAutoPause: a running capsule whose inactivity timeout passed
// is paused, unless a call keeps it busy; List reports it once.
func TestFakeIdleAutoPause(t *testing.T) {
	h := newFakeHost(t, nil)
	ctx := context.Background()
	for _, id := range []string{idA, idB, idC} {
		timeout := 1
		if id == idC {
			timeout = 0 // never
		}
		if _, err := h.a.Create(ctx, CreateParams{ID: id, TimeoutSec: timeout}); err != nil {
			t.Fatal(err)
		}
	}
	_, _, done, err := h.a.Envd(ctx, idB)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, idA+" is paused", func() bool { return h.status(idA) == StatusPaused && h.record(idA).Status == StatusPaused })
	h.wantCapsule(idA, StatusPaused)
	_, auto, _ := h.a.List(ctx)
	if !slices.Equal(auto, []string{idA}) {
		t.Errorf("auto-paused %v, want [%s]", auto, idA)
	}
	if _, auto, _ := h.a.List(ctx); len(auto) != 0 {
		t.Errorf("auto-paused %v reported twice", auto)
	}
	time.Sleep(100 * time.Millisecond)
	if st := h.status(idB); st != StatusRunning {
		t.Fatalf("busy capsule is %s", st)
	}
	done()
	eventually(t, idB+" is paused once idle", func() bool { return h.status(idB) == StatusPaused && h.record(idB).Status == StatusPaused })
	h.wantCapsule(idB, StatusPaused)
	h.wantCapsule(idC, StatusRunning)
}

// TestFakeIdleAutoPauseFailure: a capsule that cannot be paused when its
// timeout passes — the runtime fails, or the capsule died on its own — is
// destroyed, and reported like a paused one.
func TestFakeIdleAutoPauseFailure(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(h *fakeHost)
	}{
		{"runtime pause fails", func(h *fakeHost) { h.rt.FailNext(runtimetest.OpPause, errBoom) }},
		{"capsule crashed", func(h *fakeHost) { h.rt.Crash(idA) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			ctx := context.Background()
			if _, err := h.a.Create(ctx, CreateParams{ID: idA, TimeoutSec: 1}); err != nil {
				t.Fatal(err)
			}
			tc.inject(h)
			eventually(t, idA+" is destroyed", func() bool { return h.status(idA) == "" })
			h.wantCapsule(idA, "")
			if _, auto, _ := h.a.List(ctx); !slices.Equal(auto, []string{idA}) {
				t.Errorf("auto-paused %v, want [%s]", auto, idA)
			}
		})
	}
}

// TestFakeRestartRecovers starts a new agent on what an agent that died
// left on disk and in the runtime, and checks each capsule ends running,
// paused or gone, with nothing left over.
func TestFakeRestartRecovers(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup runs with the first agent; between while no agent runs.
		setup, between func(h *fakeHost)
		want           Status
		check          func(h *fakeHost)
	}{
		{
			name:  "running stays running",
			setup: func(h *fakeHost) { h.create(idA) },
			want:  StatusRunning,
		},
		{
			name:    "crashed while no agent ran is discarded",
			setup:   func(h *fakeHost) { h.create(idA) },
			between: func(h *fakeHost) { h.rt.Crash(idA) },
			want:    "",
		},
		{
			name:  "paused stays paused",
			setup: func(h *fakeHost) { h.create(idA); h.pause(idA) },
			want:  StatusPaused,
		},
		{
			name:    "unfinished create is discarded",
			setup:   func(h *fakeHost) { h.create(idA) },
			between: func(h *fakeHost) { h.setRecordStatus(idA, StatusCreating) },
			want:    "",
		},
		{
			name:  "pause cut short before the checkpoint runs again",
			setup: func(h *fakeHost) { h.create(idA) },
			between: func(h *fakeHost) {
				h.setRecordStatus(idA, StatusPausing)
				mkdirs(h.t, h.a.dirs.snapshotTmp(idA))
			},
			want: StatusRunning,
			check: func(h *fakeHost) {
				if n := len(h.net.Inits(idA)); n != 2 {
					h.t.Errorf("envd initialised %d times, want 2 (create, recovery)", n)
				}
			},
		},
		{
			name:  "pause cut short after the checkpoint keeps the snapshot",
			setup: func(h *fakeHost) { h.create(idA) },
			between: func(h *fakeHost) {
				h.setRecordStatus(idA, StatusPausing)
				mkdirs(h.t, h.a.dirs.snapshotTmp(idA))
				if err := h.rt.Pause(context.Background(), idA, runtime.Snapshot{Dir: h.a.dirs.snapshotTmp(idA)}); err != nil {
					h.t.Fatal(err)
				}
			},
			want: StatusPaused,
		},
		{
			name:  "pause cut short with the capsule listed but envd gone keeps the checkpoint",
			setup: func(h *fakeHost) { h.create(idA) },
			between: func(h *fakeHost) {
				h.setRecordStatus(idA, StatusPausing)
				writeFile(h.t, filepath.Join(h.a.dirs.snapshotTmp(idA), runtimetest.CheckpointFile), idA)
				h.net.Wedge(idA, true)
			},
			want:  StatusPaused,
			check: func(h *fakeHost) { h.net.Wedge(idA, false) },
		},
		{
			name:    "resume cut short before the restore stays paused",
			setup:   func(h *fakeHost) { h.create(idA); h.pause(idA) },
			between: func(h *fakeHost) { h.setRecordStatus(idA, StatusResuming) },
			want:    StatusPaused,
		},
		{
			name:  "resume cut short after the restore runs",
			setup: func(h *fakeHost) { h.create(idA); h.pause(idA); h.eventuallyNoNetwork(idA) },
			between: func(h *fakeHost) {
				h.setRecordStatus(idA, StatusResuming)
				ctx := context.Background()
				n, hostIP, err := h.net.Setup(ctx, idA, false)
				if err != nil {
					h.t.Fatal(err)
				}
				r := h.record(idA)
				r.Network, r.HostIP = n, hostIP
				if err := writeJSON(h.a.dirs.recordFile(idA), r); err != nil {
					h.t.Fatal(err)
				}
				if err := h.rt.Restore(ctx, h.a.spec(&r), runtime.Snapshot{Dir: h.a.dirs.snapshot(idA)}); err != nil {
					h.t.Fatal(err)
				}
			},
			want: StatusRunning,
		},
		{
			name: "leftovers nobody records are removed",
			between: func(h *fakeHost) {
				if err := h.rt.Create(context.Background(), runtime.Spec{ID: idB}); err != nil {
					h.t.Fatal(err)
				}
				if _, _, err := h.net.Setup(context.Background(), idB, false); err != nil {
					h.t.Fatal(err)
				}
				mkdirs(h.t, h.a.dirs.capsule(idC), h.a.dirs.template("team1", "tpl.tmp"))
			},
			want: "",
			check: func(h *fakeHost) {
				if ids := h.rt.IDs(); len(ids) != 0 {
					h.t.Errorf("runtime holds %v", ids)
				}
				if ids := h.net.IDs(); len(ids) != 0 {
					h.t.Errorf("networks %v", ids)
				}
				if exists(h.a.dirs.capsule(idC)) || exists(h.a.dirs.template("team1", "tpl.tmp")) {
					h.t.Error("directories of an unfinished create or template left")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, nil)
			if tc.setup != nil {
				tc.setup(h)
			}
			h.restart(func() {
				if tc.between != nil {
					tc.between(h)
				}
			})
			h.wantCapsule(idA, tc.want)
			if tc.check != nil {
				tc.check(h)
			}
			// Whatever survived works: it pauses, resumes and goes away.
			switch tc.want {
			case StatusRunning:
				h.pause(idA)
				h.resume(idA)
			case StatusPaused:
				h.resume(idA)
				h.wantCapsule(idA, StatusRunning)
			}
			if tc.want != "" {
				if err := h.a.Destroy(context.Background(), idA); err != nil {
					t.Fatal(err)
				}
			}
			h.wantCapsule(idA, "")
		})
	}
}

// TestFakeConcurrentLifecycles runs the lifecycles of several capsules at
// once, and operations racing on one capsule; run with -race.
func TestFakeConcurrentLifecycles(t *testing.T) {
	h := newFakeHost(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 6 {
		id := fmt.Sprintf("cl-fake0000000000000000conc%d", i)
		wg.Go(func() {
			steps := []func() error{
				func() error { _, err := h.a.Create(ctx, CreateParams{ID: id}); return err },
				func() error { return h.a.Pause(ctx, id) },
				func() error { _, err := h.a.Resume(ctx, ResumeParams{ID: id}); return err },
				func() error { return h.a.Pause(ctx, id) },
				func() error { return h.a.Destroy(ctx, id) },
			}
			for _, s := range steps {
				if err := s(); err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
			}
		})
	}
	// Pauses racing on one capsule: exactly one wins, the others find it
	// paused.
	h.create(idA)
	var racing sync.WaitGroup
	results := make(chan error, 3)
	for range 3 {
		racing.Go(func() { results <- h.a.Pause(ctx, idA) })
	}
	racing.Wait()
	close(results)
	ok := 0
	for err := range results {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrState):
			t.Errorf("racing pause: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d racing pauses succeeded, want 1", ok)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := h.a.Destroy(ctx, idA); err != nil {
		t.Fatal(err)
	}
	h.wantCapsule(idA, "")
	if ids := h.rt.IDs(); len(ids) != 0 {
		t.Errorf("runtime holds %v", ids)
	}
	eventually(t, "every network is gone", func() bool { return len(h.net.IDs()) == 0 })
}
