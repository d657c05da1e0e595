package images

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newStore returns a Store in a fresh directory, closed when t ends.
func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	s := &Store{Dir: dir, Log: testLogger(t)}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestMinimal(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	s := newStore(t, dir)

	start := time.Now()
	img, err := s.Ensure(t.Context(), "minimal")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built minimal in %v", time.Since(start))
	if b, err := hex.DecodeString(img.ID); err != nil || len(b) != 32 {
		t.Errorf("ID = %q, want sha256 hex", img.ID)
	}
	if want := filepath.Join(dir, "minimal", img.ID, "rootfs"); img.Path != want {
		t.Errorf("Path = %q, want %q", img.Path, want)
	}
	root := img.Path

	var info Info
	raw, err := os.ReadFile(filepath.Join(root, "..", "image.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "minimal" || info.ID != img.ID || info.CreatedAt.IsZero() || info.SizeBytes < 1<<20 {
		t.Errorf("image.json = %+v", info)
	}
	t.Logf("minimal image: %d bytes", info.SizeBytes)

	// Layout: merged /usr, busybox and its applets.
	for link, target := range map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "usr/bin/sh": "/bin/busybox", "usr/sbin/ip": "/bin/busybox"} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, target)
		}
	}
	host, _ := os.ReadFile(hostBusybox)
	inImage, err := os.ReadFile(filepath.Join(root, "usr/bin/busybox"))
	if err != nil || !bytes.Equal(host, inImage) {
		t.Errorf("usr/bin/busybox differs from %s (err %v)", hostBusybox, err)
	}

	// Directories: mode and owner.
	for name, want := range map[string]struct {
		mode     fs.FileMode
		uid, gid uint32
	}{
		".":         {0o755, 0, 0},
		"root":      {0o700, 0, 0},
		"home/user": {0o755, 1000, 1000},
		"tmp":       {fs.ModeSticky | 0o777, 0, 0},
		"var/tmp":   {fs.ModeSticky | 0o777, 0, 0},
		"proc":      {0o555, 0, 0},
		"sys":       {0o555, 0, 0},
		"dev":       {0o755, 0, 0},
		"run":       {0o755, 0, 0},
		".wrenn":    {0o755, 0, 0},
		"usr/bin":   {0o755, 0, 0},
	} {
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || fi.Mode()&(fs.ModePerm|fs.ModeSticky) != want.mode || st.Uid != want.uid || st.Gid != want.gid {
			t.Errorf("%s: mode %v owner %d:%d, want dir %v %d:%d", name, fi.Mode(), st.Uid, st.Gid, want.mode, want.uid, want.gid)
		}
	}
	for _, name := range []string{"etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/passwd", "etc/group", "etc/shadow"} {
		if fi, err := os.Lstat(filepath.Join(root, name)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v, %v", name, fi, err)
		}
	}

	// Users, seen from inside the image by busybox, with PATH working.
	out := runIn(t, root, "/bin/sh", "-c",
		"id -u root; id -u user; id -g user; id -gn user; "+
			"grep '^root:' /etc/passwd | cut -d: -f6,7; grep '^user:' /etc/passwd | cut -d: -f6,7; "+
			"which ls awk ip; cat /etc/hostname")
	want := "0\n1000\n1000\nuser\n/root:/bin/sh\n/home/user:/bin/sh\n/usr/bin/ls\n/usr/bin/awk\n/usr/sbin/ip\nwrenn\n"
	if out != want {
		t.Errorf("inside the image:\n%s\nwant:\n%s", out, want)
	}

	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != img.ID || list[0].Path != img.Path {
		t.Errorf("List = %+v", list)
	}
}

func TestEnsureCached(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	s := newStore(t, dir)
	if _, err := s.Built("minimal"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Built before a build = %v, want fs.ErrNotExist", err)
	}
	first, err := s.Ensure(t.Context(), "minimal")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Built("minimal"); err != nil || info.ID != first.ID || info.Path != first.Path {
		t.Fatalf("Built after the build = %+v, %v; Ensure gave %+v", info, err, first)
	}
	infoPath := filepath.Join(first.Path, "..", infoFile)
	before, err := os.Stat(infoPath)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	second, err := s.Ensure(t.Context(), "minimal")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cache hit in %v", time.Since(start))
	// A new store on the same directory, as after an agent restart.
	third, err := newStore(t, dir).Ensure(t.Context(), "minimal")
	if err != nil {
		t.Fatal(err)
	}
	if second != first || third != first {
		t.Errorf("Ensure = %+v, then %+v and %+v", first, second, third)
	}
	if n := s.builds.Load(); n != 1 {
		t.Errorf("builds = %d, want 1", n)
	}
	after, err := os.Stat(infoPath)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("image.json rewritten: mtime %v → %v", before.ModTime(), after.ModTime())
	}
}

func TestEnsureConcurrent(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	// Two stores stand for two agent processes: they share only the
	// directory and its flock.
	stores := []*Store{newStore(t, dir), newStore(t, dir)}
	const callers = 8
	imgs := make([]runtime.Image, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			imgs[i], errs[i] = stores[i%2].Ensure(t.Context(), "minimal")
		})
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if imgs[i] != imgs[0] {
			t.Errorf("caller %d got %+v, caller 0 %+v", i, imgs[i], imgs[0])
		}
	}
	if n := stores[0].builds.Load() + stores[1].builds.Load(); n != 1 {
		t.Errorf("builds = %d, want 1", n)
	}
}

func TestLeftoversRemoved(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	id, err := minimal.id()
	if err != nil {
		t.Fatal(err)
	}
	// A build that crashed half way, and an image directory that lacks
	// image.json (not made by a build).
	tmp := filepath.Join(dir, "minimal", tmpPrefix+id[:12]+"-123")
	stray := filepath.Join(dir, "minimal", id)
	for _, d := range []string{filepath.Join(tmp, "rootfs", "usr", "bin"), filepath.Join(stray, "rootfs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(stray, "rootfs", "junk"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	s := newStore(t, dir)
	img, err := s.Ensure(t.Context(), "minimal")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover build directory still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(img.Path, "junk")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stray image directory was kept: %v", err)
	}
	if n := s.builds.Load(); n != 1 {
		t.Errorf("builds = %d, want 1", n)
	}
}

func TestRemoveAndPrune(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	s := newStore(t, dir)
	img, err := s.Ensure(t.Context(), "minimal")
	if err != nil {
		t.Fatal(err)
	}

	// Two images of an older definition of the recipe.
	for _, old := range []string{"old1", "old2"} {
		d := filepath.Join(dir, "minimal", old)
		if err := os.MkdirAll(filepath.Join(d, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		enc, _ := json.Marshal(Info{Name: "minimal", ID: old, CreatedAt: time.Now().UTC()})
		if err := os.WriteFile(filepath.Join(d, infoFile), enc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if list, err := s.List(); err != nil || len(list) != 3 {
		t.Fatalf("List = %+v, %v; want 3 images", list, err)
	}
	removed, err := s.Prune(t.Context(), "minimal", func(i Info) bool { return i.ID == "old2" })
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].ID != "old1" {
		t.Errorf("Prune removed %+v, want old1", removed)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, i := range list {
		ids = append(ids, i.ID)
	}
	if len(ids) != 2 || !strings.Contains(strings.Join(ids, " "), img.ID) || !strings.Contains(strings.Join(ids, " "), "old2") {
		t.Errorf("after Prune: %v", ids)
	}

	for _, id := range []string{img.ID, "old2", img.ID} { // the second removal of img is a no-op
		if err := s.Remove(t.Context(), "minimal", id); err != nil {
			t.Fatalf("Remove %s: %v", id, err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(dir, "minimal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != lockFile {
			t.Errorf("left in the store: %s", e.Name())
		}
	}
	if err := s.Remove(t.Context(), "minimal", "../x"); err == nil {
		t.Error("Remove accepted an id with a path separator")
	}
}

func TestUnknownRecipe(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	defer s.Close()
	if _, err := s.Ensure(t.Context(), "nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Ensure(nope) = %v, want ErrUnknown", err)
	}
	if _, err := s.Built("nope"); !errors.Is(err, ErrUnknown) {
		t.Errorf("Built(nope) = %v, want ErrUnknown", err)
	}
}

// TestCloseStopsBuild checks that a waiter's deadline does not stop a
// build, Close does, and a failed build leaves nothing behind.
func TestCloseStopsBuild(t *testing.T) {
	testutil.RequireRoot(t)
	started := make(chan struct{})
	recipes["test-block"] = &recipe{
		name: "test-block", version: 1,
		build: func(ctx context.Context, b *builder) error {
			close(started)
			// A child process, as a real build has: cancellation must
			// kill it.
			return b.run(ctx, nil, "/bin/sleep", "600")
		},
	}
	t.Cleanup(func() { delete(recipes, "test-block") })

	dir := t.TempDir()
	s := &Store{Dir: dir, Log: testLogger(t)}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Ensure(ctx, "test-block"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ensure = %v, want deadline exceeded", err)
	}
	<-started
	s.mu.Lock()
	inFlight := len(s.flights)
	s.mu.Unlock()
	if inFlight != 1 {
		t.Errorf("flights after the waiter left = %d, want the build still running", inFlight)
	}

	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %v", d)
	}
	if _, err := s.Ensure(t.Context(), "test-block"); !errors.Is(err, ErrClosed) {
		t.Errorf("Ensure after Close = %v, want ErrClosed", err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "test-block"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != lockFile {
			t.Errorf("left after a cancelled build: %s", e.Name())
		}
	}
	if out, _ := exec.Command("pgrep", "-f", "^/bin/sleep 600$").Output(); len(out) > 0 {
		t.Errorf("build process survived: %s", out)
	}
}

// runIn runs argv inside rootfs (chroot, private mount namespace) and
// returns its stdout.
func runIn(t *testing.T, rootfs string, argv ...string) string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = chrootEnv
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs, Unshareflags: syscall.CLONE_NEWNS}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v in %s: %v\n%s", argv, rootfs, err, stderr.String())
	}
	return string(out)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
