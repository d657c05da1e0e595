package suspend_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/suspend"
)

// fakeAgent keeps capsule statuses in memory; ids in failPause/failResume fail those operations.
type fakeAgent struct {
	mu         sync.Mutex
	caps       map[string]capsules.Info
	failPause  map[string]bool
	failResume map[string]bool
	resumed    []capsules.ResumeParams
	// onResume, when set, runs before each resume (tests cancel there).
	onResume func(id string)
}

func newFake(statuses map[string]capsules.Status) *fakeAgent {
	f := &fakeAgent{caps: map[string]capsules.Info{}, failPause: map[string]bool{}, failResume: map[string]bool{}}
	for id, st := range statuses {
		f.caps[id] = capsules.Info{ID: id, Status: st, DefaultUser: "user-" + id, DefaultEnv: map[string]string{"ID": id}}
	}
	return f
}

func (f *fakeAgent) Capsules(context.Context) ([]capsules.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Values(f.caps)), nil
}

func (f *fakeAgent) Info(id string) (capsules.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.caps[id]
	if !ok {
		return capsules.Info{}, fmt.Errorf("%w: %s", capsules.ErrNotFound, id)
	}
	return in, nil
}

func (f *fakeAgent) Pause(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failPause[id] {
		return errors.New("checkpoint failed")
	}
	in := f.caps[id]
	in.Status = capsules.StatusPaused
	f.caps[id] = in
	return nil
}

func (f *fakeAgent) Resume(ctx context.Context, p capsules.ResumeParams) (capsules.Info, error) {
	if f.onResume != nil {
		f.onResume(p.ID)
	}
	if err := ctx.Err(); err != nil {
		return capsules.Info{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failResume[p.ID] {
		return capsules.Info{}, errors.New("restore failed")
	}
	in := f.caps[p.ID]
	in.Status = capsules.StatusRunning
	f.caps[p.ID] = in
	f.resumed = append(f.resumed, p)
	return in, nil
}

var log = slog.New(slog.NewTextHandler(io.Discard, nil))

func sorted(s []string) []string { slices.Sort(s); return s }

func TestPauseAndResume(t *testing.T) {
	dir := t.TempDir()
	f := newFake(map[string]capsules.Status{"a": capsules.StatusRunning, "b": capsules.StatusRunning, "c": capsules.StatusPaused, "d": capsules.StatusRunning})
	f.failPause["d"] = true
	paused, err := suspend.PauseRunning(context.Background(), f, dir, log)
	if err == nil {
		t.Error("a failed pause is not reported")
	}
	if got := sorted(paused); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("paused %v", got)
	}
	rec, err := suspend.Recorded(dir)
	if err != nil || !slices.Equal(sorted(rec), []string{"a", "b"}) {
		t.Fatalf("recorded %v %v", rec, err)
	}
	fi, err := os.Stat(filepath.Join(dir, suspend.FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("record file: %v %v", fi, err)
	}

	// "b" was destroyed meanwhile and "a" fails to restore: only what can come back does; the record
	// is cleared either way.
	delete(f.caps, "b")
	f.failResume["a"] = true
	resumed, err := suspend.ResumeRecorded(context.Background(), f, dir, log)
	if err == nil || len(resumed) != 0 {
		t.Fatalf("resume: %v %v", resumed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, suspend.FileName)); !os.IsNotExist(err) {
		t.Fatalf("record left: %v", err)
	}

	// A clean round: the stored default user and env are passed back. ("a" stayed paused after its
	// failed resume and was dropped from the record; a user resumes it.)
	if in, _ := f.Info("a"); in.Status != capsules.StatusPaused {
		t.Fatalf("a after its failed resume: %s", in.Status)
	}
	f.failResume["a"] = false
	f.caps["a"] = capsules.Info{ID: "a", Status: capsules.StatusRunning, DefaultUser: "user-a", DefaultEnv: map[string]string{"ID": "a"}}
	f.caps["b"] = capsules.Info{ID: "b", Status: capsules.StatusRunning, DefaultUser: "user-b", DefaultEnv: map[string]string{"ID": "b"}}
	if _, err := suspend.PauseRunning(context.Background(), f, dir, log); err == nil {
		t.Error("d's failure not reported")
	}
	resumed, err = suspend.ResumeRecorded(context.Background(), f, dir, log)
	if err != nil || !slices.Equal(sorted(resumed), []string{"a", "b"}) {
		t.Fatalf("resumed %v %v", resumed, err)
	}
	for _, p := range f.resumed {
		if p.DefaultUser != "user-"+p.ID || p.DefaultEnv["ID"] != p.ID {
			t.Errorf("resume of %s with %+v", p.ID, p)
		}
	}
	if rec, _ := suspend.Recorded(dir); len(rec) != 0 {
		t.Errorf("record after resume: %v", rec)
	}
	// Nothing recorded: nothing to do.
	if resumed, err := suspend.ResumeRecorded(context.Background(), f, dir, log); err != nil || len(resumed) != 0 {
		t.Errorf("resume without record: %v %v", resumed, err)
	}
}

// TestInterruptedResume: a shutdown during the startup resume keeps the ids not yet resumed, and the
// next shutdown adds to them.
func TestInterruptedResume(t *testing.T) {
	dir := t.TempDir()
	ids := map[string]capsules.Status{}
	for i := range 10 {
		ids[fmt.Sprintf("c%d", i)] = capsules.StatusRunning
	}
	f := newFake(ids)
	if _, err := suspend.PauseRunning(context.Background(), f, dir, log); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var n int
	var mu sync.Mutex
	f.onResume = func(string) {
		mu.Lock()
		defer mu.Unlock()
		if n++; n == 3 {
			cancel()
		}
	}
	resumed, err := suspend.ResumeRecorded(ctx, f, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := suspend.Recorded(dir)
	if len(resumed) == 0 || len(rec) == 0 || len(resumed)+len(rec) != 10 {
		t.Fatalf("resumed %d, still recorded %d", len(resumed), len(rec))
	}
	// The next shutdown pauses the resumed ones again and keeps the others recorded.
	f.onResume = nil
	if _, err := suspend.PauseRunning(context.Background(), f, dir, log); err != nil {
		t.Fatal(err)
	}
	if rec, _ := suspend.Recorded(dir); len(rec) != 10 {
		t.Fatalf("recorded after the second shutdown: %v", rec)
	}
	if resumed, err := suspend.ResumeRecorded(context.Background(), f, dir, log); err != nil || len(resumed) != 10 {
		t.Fatalf("final resume: %v %v", resumed, err)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]suspend.Mode{"keep": suspend.Keep, "pause": suspend.Pause} {
		if m, err := suspend.ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, m, err)
		}
	}
	for _, in := range []string{"", "Pause", "stop"} {
		if _, err := suspend.ParseMode(in); err == nil {
			t.Errorf("ParseMode(%q) accepted", in)
		}
	}
}
