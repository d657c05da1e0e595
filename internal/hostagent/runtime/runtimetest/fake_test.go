package runtimetest

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

func TestConformance(t *testing.T) {
	Conformance(t, func(*testing.T) Backend {
		return Backend{Runtime: New(), Spec: func(_ *testing.T, id string) runtime.Spec {
			return runtime.Spec{ID: id, VCPUs: 1, MemoryMB: 256, DiskMB: 256, Image: Image("base")}
		}}
	})
}

func TestFakeFailNext(t *testing.T) {
	ctx := context.Background()
	f := New()
	boom := errors.New("boom")
	f.FailNext(OpCreate, boom)
	if err := f.Create(ctx, runtime.Spec{ID: "a"}); !errors.Is(err, boom) {
		t.Fatalf("Create = %v, want the injected error", err)
	}
	if f.State("a") != StateGone {
		t.Fatalf("a failed create left %q", f.State("a"))
	}
	if err := f.Create(ctx, runtime.Spec{ID: "a"}); err != nil {
		t.Fatalf("Create after the failure: %v", err)
	}
	f.FailNext(OpPause, boom)
	if err := f.Pause(ctx, "a", runtime.Snapshot{Dir: t.TempDir()}); !errors.Is(err, boom) {
		t.Fatalf("Pause = %v, want the injected error", err)
	}
	if f.State("a") != StateRunning {
		t.Fatalf("a failed pause left %q", f.State("a"))
	}
	if got := f.Count(OpCreate); got != 2 {
		t.Fatalf("Count(create) = %d, want 2", got)
	}
}

func TestFakeCrash(t *testing.T) {
	ctx := context.Background()
	f := New()
	if err := f.Create(ctx, runtime.Spec{ID: "a"}); err != nil {
		t.Fatal(err)
	}
	if !f.Crash("a") || f.Crash("a") {
		t.Fatal("Crash reports the first crash only")
	}
	if ids, _ := f.List(ctx); len(ids) != 0 {
		t.Fatalf("List = %v after a crash", ids)
	}
	if err := f.Pause(ctx, "a", runtime.Snapshot{Dir: t.TempDir()}); !errors.Is(err, runtime.ErrState) {
		t.Fatalf("Pause of a crashed capsule = %v, want ErrState", err)
	}
	if err := f.Create(ctx, runtime.Spec{ID: "a"}); !errors.Is(err, runtime.ErrExists) {
		t.Fatalf("Create over a crashed capsule = %v, want ErrExists", err)
	}
	if err := f.Destroy(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.IDs(), []string{}) {
		t.Fatalf("IDs = %v after Destroy", f.IDs())
	}
}
