package gvisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// TestLifecycle drives capsules through create, pause, restore (same id,
// and a new id in another namespace as a template does) and destroy, and
// checks that processes and files survive and nothing is left behind.
func TestLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	net1, net2 := newNet(t), newNet(t)
	idA, idB := "cl-a", "cl-b"
	specA := f.spec(t, idA, net1)
	f.destroyAtEnd(t, idA)
	f.destroyAtEnd(t, idB)
	a := newEnvdClient(net1.InsideIP)

	start := time.Now()
	if err := f.rt.Create(ctx, specA); err != nil {
		t.Fatal(err)
	}
	created := time.Since(start)
	a.waitHealthy(t)
	t.Logf("create: runsc run %v, envd healthy after %v", created, time.Since(start))

	pid := a.startCounter(t)
	a.writeFile(t, "/root/hello.txt", "hello wrenn")
	// 64 MiB of random data in the capsule's memory (a tmpfs of the
	// sentry, so its pages are in the checkpoint's pages file that restores
	// read with O_DIRECT): every restore must bring it back intact.
	blob := a.sh(t, "mkdir -p /dev/shm && dd if=/dev/urandom of=/dev/shm/blob bs=1M count=64 2>/dev/null && sha256sum /dev/shm/blob")
	// And a process holding 8 MiB of data in its own memory.
	held := a.startHolder(t)
	if len(held) < 64 {
		t.Fatalf("holder's checksum %q", held)
	}
	before := a.count(t)

	st, err := f.rt.Stats(ctx, idA)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.CPUNanos == 0 || st.MemBytes == 0 || st.DiskBytes == 0 {
		t.Errorf("stats %+v: want CPU, memory and disk usage", st)
	}
	if ids, err := f.rt.List(ctx); err != nil || !slices.Equal(ids, []string{idA}) {
		t.Errorf("List = %v, %v; want [%s]", ids, err, idA)
	}

	// Pause frees everything on the host.
	snap1 := runtime.Snapshot{Dir: t.TempDir()}
	a.prepareSnapshot(t)
	start = time.Now()
	if err := f.rt.Pause(ctx, idA, snap1); err != nil {
		t.Fatal(err)
	}
	t.Logf("pause: %v", time.Since(start))
	if procs := f.runscProcs(f.rt.capsuleDir(idA)); len(procs) > 0 {
		t.Fatalf("runsc processes left after pause:\n%s", strings.Join(procs, "\n"))
	}
	if ids, err := f.rt.List(ctx); err != nil || len(ids) != 0 {
		t.Errorf("List after pause = %v, %v; want none", ids, err)
	}
	if _, err := f.rt.Stats(ctx, idA); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Stats of a paused capsule: %v, want ErrNotFound", err)
	}

	// Restore in place: the counter continues, the file is there.
	start = time.Now()
	if err := f.rt.Restore(ctx, specA, snap1); err != nil {
		t.Fatal(err)
	}
	restored := time.Since(start)
	a.waitHealthy(t)
	t.Logf("restore: runsc restore %v, envd healthy after %v", restored, time.Since(start))
	a.requireCounting(t, pid, before)
	if got := a.readFile(t, "/root/hello.txt"); got != "hello wrenn" {
		t.Fatalf("file after restore: %q", got)
	}
	if got := a.sh(t, "sha256sum /dev/shm/blob"); got != blob {
		t.Fatalf("memory after restore: %q, was %q", got, blob)
	}
	if got := a.heldSum(t); got != held {
		t.Fatalf("process memory after restore: %q, was %q", got, held)
	}
	if _, err := os.Stat(filepath.Join(f.image.Path, "root", "hello.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("capsule write reached the image: %v", err)
	}

	// Pause again; restore the snapshot twice: as the original capsule and
	// as a new one in another namespace (a template), concurrently, the
	// second by a runtime reading through the page cache
	// (Config.BufferedCheckpoints) instead of with O_DIRECT.
	buffered := f.rt.cfg
	buffered.BufferedCheckpoints = true
	brt, err := New(buffered)
	if err != nil {
		t.Fatal(err)
	}
	snap2 := runtime.Snapshot{Dir: t.TempDir()}
	a.prepareSnapshot(t)
	before = a.count(t)
	if err := f.rt.Pause(ctx, idA, snap2); err != nil {
		t.Fatal(err)
	}
	snapFiles := dirState(t, snap2.Dir)
	specB := f.spec(t, idB, net2)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, r := range []struct {
		rt   *Runtime
		spec runtime.Spec
	}{{f.rt, specA}, {brt, specB}} {
		wg.Go(func() { errs[i] = r.rt.Restore(ctx, r.spec, snap2) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := dirState(t, snap2.Dir); got != snapFiles {
		t.Errorf("restore changed the snapshot:\n%s\nwas:\n%s", got, snapFiles)
	}
	b := newEnvdClient(net2.InsideIP)
	for _, c := range []*envdClient{a, b} {
		c.waitHealthy(t)
		c.requireCounting(t, pid, before)
		if got := c.readFile(t, "/root/hello.txt"); got != "hello wrenn" {
			t.Fatalf("file after restore at %s: %q", c.url, got)
		}
		if got := c.sh(t, "sha256sum /dev/shm/blob"); got != blob {
			t.Fatalf("memory after restore at %s: %q, was %q", c.url, got, blob)
		}
		if got := c.heldSum(t); got != held {
			t.Fatalf("process memory after restore at %s: %q, was %q", c.url, got, held)
		}
	}
	if meta := b.readFile(t, MetadataFile); !strings.Contains(meta, `"sandbox_id":"`+idB+`"`) {
		t.Errorf("new capsule sees metadata %s, want its own", meta)
	}
	// The two copies have separate file systems.
	b.writeFile(t, "/root/only-b.txt", "b")
	if code, _ := a.do(t, http.MethodGet, "/files?username=root&path=/root/only-b.txt", "", nil); code != http.StatusNotFound {
		t.Errorf("file written in %s visible in %s: %d", idB, idA, code)
	}
	if ids, err := f.rt.List(ctx); err != nil || !slices.Equal(ids, []string{idA, idB}) {
		t.Errorf("List = %v, %v; want [%s %s]", ids, err, idA, idB)
	}

	for _, id := range []string{idA, idB} {
		if err := f.rt.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	f.requireClean(t)
	for _, snap := range []runtime.Snapshot{snap1, snap2} {
		if ents, err := os.ReadDir(snap.Dir); err != nil || len(ents) == 0 {
			t.Errorf("snapshot %s: %v, %d files; Destroy must leave snapshots alone", snap.Dir, err, len(ents))
		}
	}
}

// TestCheckpointArgs checks that checkpoints write and restores read the
// capsule's memory with O_DIRECT unless Config.BufferedCheckpoints says
// otherwise (TestLifecycle restores both ways), and never compress.
func TestCheckpointArgs(t *testing.T) {
	for _, c := range []struct {
		buffered      bool
		save, restore []string
	}{
		{false,
			[]string{"checkpoint", "-leave-running", "-direct", "-image-path", "/snap", "cl-x"},
			[]string{"restore", "-detach", "-direct", "-image-path", "/snap", "--bundle", "/b", "cl-x"}},
		{true,
			[]string{"checkpoint", "-leave-running", "-image-path", "/snap", "cl-x"},
			[]string{"restore", "-detach", "-image-path", "/snap", "--bundle", "/b", "cl-x"}},
	} {
		r := &Runtime{cfg: Config{BufferedCheckpoints: c.buffered}}
		if got := r.checkpointArgs("/snap", "cl-x", "-leave-running"); !slices.Equal(got, c.save) {
			t.Errorf("BufferedCheckpoints=%v: checkpoint args %q, want %q", c.buffered, got, c.save)
		}
		if got := r.restoreArgs("/snap", "/b", "cl-x"); !slices.Equal(got, c.restore) {
			t.Errorf("BufferedCheckpoints=%v: restore args %q, want %q", c.buffered, got, c.restore)
		}
	}
}

// requireClean asserts no capsule of the fixture leaves a trace: no runsc
// processes, containers, capsule directories or mounts.
func (f *fixture) requireClean(t *testing.T) {
	t.Helper()
	if procs := f.runscProcs(""); len(procs) > 0 {
		t.Errorf("runsc processes left:\n%s", strings.Join(procs, "\n"))
	}
	if ids, err := f.rt.list(t.Context()); err != nil || len(ids) != 0 {
		t.Errorf("containers left: %v, %v", ids, err)
	}
	if ents, err := os.ReadDir(f.rt.cfg.CapsulesDir); err != nil || len(ents) != 0 {
		t.Errorf("capsule directories left: %v, %v", ents, err)
	}
	if m := f.mounts(t); len(m) > 0 {
		t.Errorf("mounts left:\n%s", strings.Join(m, "\n"))
	}
}

// TestLimits checks that the capsule's cgroup carries its memory, CPU and
// task limits.
func TestLimits(t *testing.T) {
	f := newFixture(t)
	f.rt.cfg.Debug = true
	ctx := t.Context()
	n := newNet(t)
	spec := f.spec(t, "cl-limits", n)
	spec.VCPUs, spec.MemoryMB = 2, 192
	f.destroyAtEnd(t, spec.ID)
	if err := f.rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	// The capsule's kernel sizes itself by the limit.
	e := newEnvdClient(n.InsideIP)
	e.waitHealthy(t)
	memTotal := regexp.MustCompile(fmt.Sprintf(`MemTotal:\s+%d kB`, 192<<10))
	if meminfo := e.readFile(t, "/proc/meminfo"); !memTotal.MatchString(meminfo) {
		t.Errorf("capsule /proc/meminfo:\n%s\nwant MemTotal %d kB", meminfo, 192<<10)
	}
	if ents, err := os.ReadDir(filepath.Join(f.rt.capsuleDir(spec.ID), "debug")); err != nil || len(ents) == 0 {
		t.Errorf("Debug: runsc debug logs: %v, %d files", err, len(ents))
	}

	c, ok, err := f.rt.lookup(ctx, spec.ID)
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	want := []struct {
		controller string
		files      []string // v1, v2
		value      string
	}{
		{"memory", []string{"memory.limit_in_bytes", "memory.max"}, fmt.Sprint(192 << 20)},
		{"cpu", []string{"cpu.cfs_quota_us", "cpu.max"}, "200000"},
		{"pids", []string{"pids.max"}, fmt.Sprint(defaultPidsLimit)},
	}
	for _, w := range want {
		dir, err := cgroupDir(c.PID, w.controller)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(dir, filepath.Join(f.cgroup, spec.ID)) {
			t.Errorf("sandbox in %s cgroup %s, want %s/%s", w.controller, dir, f.cgroup, spec.ID)
		}
		var got string
		for _, name := range w.files {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				got = strings.TrimSpace(string(b))
				break
			}
		}
		if !strings.HasPrefix(got, w.value) {
			t.Errorf("%s limit in %s = %q, want %s", w.controller, dir, got, w.value)
		}
	}
}

// TestErrors checks the errors callers map to API codes, and idempotent
// Destroy.
func TestErrors(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	n := newNet(t)
	spec := f.spec(t, "cl-err", n)
	f.destroyAtEnd(t, spec.ID)
	snap := runtime.Snapshot{Dir: t.TempDir()}

	if err := f.rt.Destroy(ctx, "cl-unknown"); err != nil {
		t.Errorf("Destroy of an unknown capsule: %v", err)
	}
	if err := f.rt.Pause(ctx, "cl-unknown", snap); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Pause of an unknown capsule: %v, want ErrNotFound", err)
	}
	if _, err := f.rt.Stats(ctx, "cl-unknown"); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Stats of an unknown capsule: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "../x", "a_b", "a/b"} {
		bad := spec
		bad.ID = id
		if err := f.rt.Create(ctx, bad); err == nil || errors.Is(err, runtime.ErrExists) {
			t.Errorf("Create with id %q: %v, want a validation error", id, err)
		}
	}

	if err := f.rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := f.rt.Create(ctx, spec); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	if err := f.rt.Restore(ctx, spec, snap); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("Restore over a running capsule: %v, want ErrExists", err)
	}
	newEnvdClient(n.InsideIP).waitHealthy(t)
	if err := f.rt.Pause(ctx, spec.ID, snap); err != nil {
		t.Fatal(err)
	}
	if err := f.rt.Create(ctx, spec); !errors.Is(err, runtime.ErrExists) {
		t.Errorf("Create over a paused capsule: %v, want ErrExists", err)
	}
	empty := runtime.Snapshot{Dir: t.TempDir()}
	err := f.rt.Restore(ctx, spec, empty)
	if err == nil || !strings.Contains(err.Error(), "runsc restore") {
		t.Errorf("Restore from an empty snapshot: %v, want runsc's error", err)
	}
	t.Logf("restore from an empty snapshot: %v", err)

	for range 2 {
		if err := f.rt.Destroy(ctx, spec.ID); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	}
	f.requireClean(t)
}

// TestLocks checks that operations on one id wait for each other and give
// up with their context, while other ids proceed.
func TestLocks(t *testing.T) {
	var l idLocks
	unlock, err := l.lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.lock(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	other()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a: %v, want deadline exceeded", err)
	}
	got := make(chan struct{})
	go func() {
		u, err := l.lock(context.Background(), "a")
		if err == nil {
			u()
		}
		close(got)
	}()
	time.Sleep(10 * time.Millisecond) // most likely waiting now; if not, it locks after the unlock, which passes too
	unlock()
	<-got
	if len(l.m) != 0 {
		t.Errorf("lock entries left: %v", l.m)
	}
}

// dirState describes the files of dir: names, sizes, modification times.
func dirState(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d %s\n", e.Name(), info.Size(), info.ModTime())
	}
	return b.String()
}

// TestNameservers: every capsule gets the runtime's DNS servers in /etc/resolv.conf (read-only), and a
// capsule restored on a host with another configuration gets that host's servers.
func TestNameservers(t *testing.T) {
	f := newFixture(t)
	f.rt.cfg.Nameservers = []string{"192.0.2.53", "2001:db8::53"}
	ctx := t.Context()
	n := newNet(t)
	id := "cl-dns"
	spec := f.spec(t, id, n)
	f.destroyAtEnd(t, id)
	c := newEnvdClient(n.InsideIP)
	if err := f.rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	c.waitHealthy(t)
	got := c.readFile(t, "/etc/resolv.conf")
	if !strings.Contains(got, "nameserver 192.0.2.53\n") || !strings.Contains(got, "nameserver 2001:db8::53\n") {
		t.Fatalf("resolv.conf:\n%s", got)
	}
	if out := c.sh(t, "echo x >> /etc/resolv.conf 2>&1 || echo read-only"); !strings.Contains(out, "read-only") {
		t.Errorf("resolv.conf is writable: %q", out)
	}

	snap := runtime.Snapshot{Dir: t.TempDir()}
	c.prepareSnapshot(t)
	if err := f.rt.Pause(ctx, id, snap); err != nil {
		t.Fatal(err)
	}
	f.rt.cfg.Nameservers = nil
	if err := f.rt.Restore(ctx, spec, snap); err != nil {
		t.Fatal(err)
	}
	c.waitHealthy(t)
	if got := c.readFile(t, "/etc/resolv.conf"); strings.Contains(got, "nameserver") || !strings.Contains(got, "No DNS servers") {
		t.Fatalf("resolv.conf after restore without servers:\n%s", got)
	}
}
