package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Backend is a Runtime under test and a way to make specs it can boot.
type Backend struct {
	Runtime runtime.Runtime
	// Spec returns a spec that boots capsule id, with a network of its own;
	// Conformance asks once per id.
	Spec func(t *testing.T, id string) runtime.Spec
}

// Conformance checks the contract of the Runtime interface (see
// runtime.Runtime) that the host agent relies on: create, pause into a
// snapshot directory, restore the same snapshot under the same or a new
// id, destroy, stats and listing, and the errors each returns. newBackend
// is called once per subtest; every capsule a subtest starts is destroyed
// when it ends. The ids it uses have one length, like the agent's: runsc
// takes an id that prefixes another for ambiguous.
func Conformance(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("CreateListDestroy", func(t *testing.T) {
		c := newConformance(t, newBackend)
		a := c.create("conf-a0")
		c.wantListed(a.ID)
		if _, err := c.rt.Stats(c.ctx, a.ID); err != nil {
			t.Errorf("Stats of a running capsule: %v", err)
		}
		if err := c.rt.Create(c.ctx, a); !errors.Is(err, runtime.ErrExists) {
			t.Errorf("Create of a running id = %v, want ErrExists", err)
		}
		c.destroy(a.ID)
		c.wantListed()
		if err := c.rt.Destroy(c.ctx, a.ID); err != nil {
			t.Errorf("second Destroy = %v, want nil", err)
		}
		if _, err := c.rt.Stats(c.ctx, a.ID); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("Stats of a destroyed capsule = %v, want ErrNotFound", err)
		}
	})

	t.Run("PauseRestore", func(t *testing.T) {
		c := newConformance(t, newBackend)
		a := c.create("conf-b0")
		snap := c.pause(a.ID)
		c.wantListed()
		if _, err := c.rt.Stats(c.ctx, a.ID); !errors.Is(err, runtime.ErrNotFound) && !errors.Is(err, runtime.ErrState) {
			t.Errorf("Stats of a paused capsule = %v, want ErrNotFound or ErrState", err)
		}
		other := runtime.Snapshot{Dir: t.TempDir()}
		if err := c.rt.Pause(c.ctx, a.ID, other); !errors.Is(err, runtime.ErrNotFound) && !errors.Is(err, runtime.ErrState) {
			t.Errorf("Pause of a paused capsule = %v, want ErrNotFound or ErrState", err)
		}
		if err := c.rt.Restore(c.ctx, a, snap); err != nil {
			t.Fatalf("Restore of the paused capsule: %v", err)
		}
		c.wantListed(a.ID)
		if err := c.rt.Restore(c.ctx, a, snap); !errors.Is(err, runtime.ErrExists) {
			t.Errorf("Restore over a running capsule = %v, want ErrExists", err)
		}
		// Paused again after a restore: a new snapshot in a new directory.
		c.pause(a.ID)
		c.destroy(a.ID)
		c.wantListed()
	})

	t.Run("RestoreSnapshotManyTimes", func(t *testing.T) {
		c := newConformance(t, newBackend)
		a := c.create("conf-c0")
		snap := c.pause(a.ID)
		before := files(t, snap.Dir)
		var ids []string
		for _, id := range []string{"conf-c1", "conf-c2"} {
			s := c.spec(id)
			if err := c.rt.Restore(c.ctx, s, snap); err != nil {
				t.Fatalf("Restore %s from %s's snapshot: %v", id, a.ID, err)
			}
			ids = append(ids, id)
		}
		c.wantListed(ids...)
		if after := files(t, snap.Dir); !slices.Equal(before, after) {
			t.Errorf("restores changed the snapshot: %v, then %v", before, after)
		}
		// The paused capsule itself still restores from it.
		if err := c.rt.Restore(c.ctx, a, snap); err != nil {
			t.Fatalf("Restore %s after the others: %v", a.ID, err)
		}
		c.wantListed(append(ids, a.ID)...)
	})

	t.Run("DestroyPaused", func(t *testing.T) {
		c := newConformance(t, newBackend)
		a := c.create("conf-d0")
		c.pause(a.ID)
		c.destroy(a.ID)
		c.wantListed()
		// The id is free again.
		if err := c.rt.Create(c.ctx, a); err != nil {
			t.Fatalf("Create under a destroyed capsule's id: %v", err)
		}
		c.wantListed(a.ID)
	})

	t.Run("UnknownCapsule", func(t *testing.T) {
		c := newConformance(t, newBackend)
		const id = "conf-x0"
		if err := c.rt.Pause(c.ctx, id, runtime.Snapshot{Dir: t.TempDir()}); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("Pause of an unknown capsule = %v, want ErrNotFound", err)
		}
		if _, err := c.rt.Stats(c.ctx, id); !errors.Is(err, runtime.ErrNotFound) {
			t.Errorf("Stats of an unknown capsule = %v, want ErrNotFound", err)
		}
		if err := c.rt.Destroy(c.ctx, id); err != nil {
			t.Errorf("Destroy of an unknown capsule = %v, want nil", err)
		}
		c.wantListed()
	})
}

// conformance is one subtest's backend and helpers.
type conformance struct {
	t   *testing.T
	ctx context.Context
	rt  runtime.Runtime
	mk  func(t *testing.T, id string) runtime.Spec
}

func newConformance(t *testing.T, newBackend func(t *testing.T) Backend) *conformance {
	t.Helper()
	b := newBackend(t)
	return &conformance{t: t, ctx: t.Context(), rt: b.Runtime, mk: b.Spec}
}

// spec makes a spec for id and destroys the capsule when the test ends.
func (c *conformance) spec(id string) runtime.Spec {
	c.t.Helper()
	s := c.mk(c.t, id)
	if s.ID != id {
		c.t.Fatalf("Backend.Spec(%q) returned id %q", id, s.ID)
	}
	c.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.rt.Destroy(ctx, id); err != nil {
			c.t.Errorf("destroy %s: %v", id, err)
		}
	})
	return s
}

func (c *conformance) create(id string) runtime.Spec {
	c.t.Helper()
	s := c.spec(id)
	if err := c.rt.Create(c.ctx, s); err != nil {
		c.t.Fatalf("Create %s: %v", id, err)
	}
	return s
}

// pause pauses id into a new directory and checks that the snapshot holds
// data: the agent keeps an interrupted pause's snapshot only when it does.
func (c *conformance) pause(id string) runtime.Snapshot {
	c.t.Helper()
	snap := runtime.Snapshot{Dir: c.t.TempDir()}
	if err := c.rt.Pause(c.ctx, id, snap); err != nil {
		c.t.Fatalf("Pause %s: %v", id, err)
	}
	if len(files(c.t, snap.Dir)) == 0 {
		c.t.Fatalf("Pause %s wrote no non-empty file into %s", id, snap.Dir)
	}
	return snap
}

func (c *conformance) destroy(id string) {
	c.t.Helper()
	if err := c.rt.Destroy(c.ctx, id); err != nil {
		c.t.Fatalf("Destroy %s: %v", id, err)
	}
}

// wantListed checks that List returns exactly ids, sorted.
func (c *conformance) wantListed(ids ...string) {
	c.t.Helper()
	got, err := c.rt.List(c.ctx)
	if err != nil {
		c.t.Fatalf("List: %v", err)
	}
	want := slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, want) {
		c.t.Errorf("List = %v, want %v", got, want)
	}
}

// files lists the non-empty regular files directly in dir with their
// sizes.
func files(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().IsRegular() && info.Size() > 0 {
			out = append(out, fmt.Sprintf("%s:%d", e.Name(), info.Size()))
		}
	}
	return out
}
