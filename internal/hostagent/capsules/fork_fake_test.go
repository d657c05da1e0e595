package capsules

import (
	"context"
	"errors"
	"os"
	"testing"
)

func TestForkMakesRunningCopies(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create("cl-src")
	infos, err := h.a.Fork(context.Background(), "cl-src", []ForkTarget{{ID: "cl-f1", EnvdAccessToken: "t1"}, {ID: "cl-f2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].ID != "cl-f1" || infos[1].ID != "cl-f2" {
		t.Fatalf("infos %+v", infos)
	}
	src := h.record("cl-src")
	for _, in := range infos {
		if in.Status != StatusRunning || in.HostIP == "" || in.HostIP == src.HostIP {
			t.Fatalf("copy %+v", in)
		}
		if got := h.rt.RestoredFrom(in.ID); got != "cl-src" {
			t.Fatalf("%s restored from %q", in.ID, got)
		}
		inits := h.net.Inits(in.ID)
		if len(inits) != 1 || inits[0].AccessToken == nil || *inits[0].AccessToken == src.EnvdToken {
			t.Fatalf("%s /init %+v: want its own token", in.ID, inits)
		}
	}
	if tok := *h.net.Inits("cl-f1")[0].AccessToken; tok != "t1" {
		t.Fatalf("token %q", tok)
	}
	h.wantCapsule("cl-src", StatusRunning)
	if !exists(h.a.dirs.forks()) {
		return
	}
	if n, _ := readDirNames(h.a.dirs.forks()); len(n) != 0 {
		t.Fatalf("fork snapshots left: %v", n)
	}
}

func TestForkRejects(t *testing.T) {
	h := newFakeHost(t, nil)
	h.create("cl-src")
	h.create("cl-other")
	for _, tc := range []struct {
		targets []ForkTarget
		want    error
	}{
		{nil, ErrInvalid},
		{make([]ForkTarget, MaxForks+1), ErrInvalid},
		{[]ForkTarget{{ID: "a"}, {ID: "a"}}, ErrInvalid},
		{[]ForkTarget{{ID: "cl-other"}}, ErrExists},
	} {
		if _, err := h.a.Fork(context.Background(), "cl-src", tc.targets); !errors.Is(err, tc.want) {
			t.Errorf("Fork(%v) = %v, want %v", tc.targets, err, tc.want)
		}
	}
	if _, err := h.a.Fork(context.Background(), "cl-nope", []ForkTarget{{ID: "x"}}); !errors.Is(err, ErrNotFound) {
		t.Errorf("fork of unknown: %v", err)
	}
	h.pause("cl-src")
	if _, err := h.a.Fork(context.Background(), "cl-src", []ForkTarget{{ID: "x"}}); !errors.Is(err, ErrState) {
		t.Errorf("fork of paused: %v", err)
	}
	if _, err := h.a.Info("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("failed fork left target: %v", err)
	}
}

func readDirNames(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, err
}
