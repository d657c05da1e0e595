package envd_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/api/envd/filesystem"
	"github.com/wrenn/wrenn/internal/testutil"
)

func stat(t *testing.T, e *env, path string, hdr ...string) (*filesystem.EntryInfo, error) {
	t.Helper()
	req := connect.NewRequest(&filesystem.StatRequest{Path: path})
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header().Set(hdr[i], hdr[i+1])
	}
	resp, err := e.fs.Stat(ctxT(t, 30*time.Second), req)
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetEntry(), nil
}

func TestStat(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	writeFile(t, file, "hello")
	if err := unix.Setxattr(file, "user.k", []byte("v"), 0); err != nil {
		t.Fatalf("setxattr: %v", err)
	}
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(file, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}

	for _, tr := range transports() {
		t.Run(tr.name, func(t *testing.T) {
			resp, err := e.fsVia(tr).Stat(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.StatRequest{Path: file}))
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			got := resp.Msg.GetEntry()
			if got.GetName() != "a.txt" || got.GetPath() != file || got.GetType() != filesystem.FileType_FILE_TYPE_FILE ||
				got.GetSize() != 5 || got.GetMode() != 0o644 || got.GetPermissions() != "-rw-r--r--" ||
				got.GetOwner() != "root" || got.GetGroup() != "root" || !got.GetModifiedTime().AsTime().Equal(mtime) ||
				got.SymlinkTarget != nil || got.GetMetadata()["k"] != "v" {
				t.Fatalf("Stat(%s) = %v", file, got)
			}
		})
	}
	t.Run("symlink", func(t *testing.T) {
		got, err := stat(t, e, filepath.Join(dir, "link"))
		if err != nil {
			t.Fatal(err)
		}
		if got.GetSymlinkTarget() != file || got.GetType() != filesystem.FileType_FILE_TYPE_FILE ||
			!strings.HasPrefix(got.GetPermissions(), "L") || got.GetPath() != filepath.Join(dir, "link") {
			t.Fatalf("Stat(link) = %v", got)
		}
		got, err = stat(t, e, filepath.Join(dir, "dangling"))
		if err != nil {
			t.Fatal(err)
		}
		if got.SymlinkTarget != nil || got.GetType() != filesystem.FileType_FILE_TYPE_UNSPECIFIED {
			t.Fatalf("Stat(dangling) = %v", got)
		}
	})
	t.Run("directory", func(t *testing.T) {
		got, err := stat(t, e, dir)
		if err != nil {
			t.Fatal(err)
		}
		if got.GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY || !strings.HasPrefix(got.GetPermissions(), "d") {
			t.Fatalf("Stat(dir) = %v", got)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := stat(t, e, filepath.Join(dir, "missing"))
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("home and relative paths", func(t *testing.T) {
		for _, p := range []string{"~", ""} {
			got, err := stat(t, e, p)
			if err != nil || got.GetPath() != "/root" {
				t.Errorf("Stat(%q) = %v, %v; want /root", p, got, err)
			}
		}
		_, err := stat(t, e, "~nobody/x")
		wantCode(t, err, connect.CodeInvalidArgument)
	})
	t.Run("as another user", func(t *testing.T) {
		u := testutil.CreateUser(t, testutil.RandomName("wrnt", 8))
		writeFile(t, filepath.Join(u.Home, "rel.txt"), "x")
		got, err := stat(t, e, "rel.txt", "Authorization", basicUser(u.Name))
		if err != nil || got.GetPath() != filepath.Join(u.Home, "rel.txt") {
			t.Fatalf("Stat(rel.txt) as %s = %v, %v", u.Name, got, err)
		}
		_, err = stat(t, e, "x", "Authorization", basicUser("no-such-user-wrn"))
		wantCode(t, err, connect.CodeUnauthenticated)
	})
}

func TestListDir(t *testing.T) {
	e := startEnvd(t)
	root := t.TempDir()
	dir := filepath.Join(root, "d")
	for _, p := range []string{"sub/deep", "sub/z"} {
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "a.txt"), "a")
	writeFile(t, filepath.Join(dir, "sub", "b.txt"), "b")
	writeFile(t, filepath.Join(dir, "sub", "deep", "c.txt"), "c")
	if err := os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(root, "dlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "loop2"), filepath.Join(root, "loop1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "loop1"), filepath.Join(root, "loop2")); err != nil {
		t.Fatal(err)
	}

	list := func(path string, depth uint32) ([]*filesystem.EntryInfo, error) {
		resp, err := e.fs.ListDir(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.ListDirRequest{Path: path, Depth: depth}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetEntries(), nil
	}
	rel := func(base string, es []*filesystem.EntryInfo) []string {
		var out []string
		for _, en := range es {
			out = append(out, strings.TrimPrefix(en.GetPath(), base+"/"))
		}
		return out
	}
	tests := []struct {
		path  string
		depth uint32
		want  []string
	}{
		{dir, 0, []string{"a.txt", "link", "sub"}},
		{dir, 1, []string{"a.txt", "link", "sub"}},
		{dir, 2, []string{"a.txt", "link", "sub", "sub/b.txt", "sub/deep", "sub/z"}},
		{dir, 3, []string{"a.txt", "link", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.txt", "sub/z"}},
		{filepath.Join(root, "dlink"), 1, []string{"a.txt", "link", "sub"}},
	}
	for _, tt := range tests {
		es, err := list(tt.path, tt.depth)
		if err != nil {
			t.Fatalf("ListDir(%s, %d): %v", tt.path, tt.depth, err)
		}
		got := rel(tt.path, es)
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if !slices.Equal(sorted, tt.want) {
			t.Errorf("ListDir(%s, %d) = %q, want %q", tt.path, tt.depth, got, tt.want)
		}
		for _, en := range es {
			switch en.GetName() {
			case "link":
				if en.GetSymlinkTarget() != filepath.Join(dir, "sub") {
					t.Errorf("link entry %v has no symlinkTarget", en)
				}
			case "a.txt", "b.txt", "c.txt":
				if en.GetType() != filesystem.FileType_FILE_TYPE_FILE {
					t.Errorf("%s type %v", en.GetName(), en.GetType())
				}
			case "sub", "deep", "z":
				if en.GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY {
					t.Errorf("%s type %v", en.GetName(), en.GetType())
				}
			}
		}
	}
	t.Run("errors", func(t *testing.T) {
		_, err := list(filepath.Join(root, "missing"), 1)
		wantCode(t, err, connect.CodeNotFound)
		_, err = list(filepath.Join(dir, "a.txt"), 1)
		wantCode(t, err, connect.CodeInvalidArgument)
		_, err = list(filepath.Join(root, "loop1"), 1)
		wantCode(t, err, connect.CodeFailedPrecondition)
	})
}

func TestMakeDirMoveRemove(t *testing.T) {
	e := startEnvd(t)
	root := t.TempDir()
	u := testutil.CreateUser(t, testutil.RandomName("wrnt", 8))
	asUser := func(req interface{ Header() http.Header }) {
		req.Header().Set("Authorization", basicUser(u.Name))
	}

	t.Run("MakeDir", func(t *testing.T) {
		path := filepath.Join(root, "x", "y", "z")
		req := connect.NewRequest(&filesystem.MakeDirRequest{Path: path})
		asUser(req)
		resp, err := e.fs.MakeDir(ctxT(t, 30*time.Second), req)
		if err != nil {
			t.Fatalf("MakeDir: %v", err)
		}
		if en := resp.Msg.GetEntry(); en.GetPath() != path || en.GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY || en.GetOwner() != u.Name {
			t.Errorf("MakeDir entry = %v", en)
		}
		for _, p := range []string{filepath.Join(root, "x"), filepath.Join(root, "x", "y"), path} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o755 || int(fi.Sys().(*syscall.Stat_t).Uid) != u.UID {
				t.Errorf("%s: mode %v uid %d, want 0755 owned by %d", p, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, u.UID)
			}
		}
		_, err = e.fs.MakeDir(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.MakeDirRequest{Path: path}))
		wantCode(t, err, connect.CodeAlreadyExists)
		writeFile(t, filepath.Join(root, "file"), "f")
		_, err = e.fs.MakeDir(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.MakeDirRequest{Path: filepath.Join(root, "file")}))
		wantCode(t, err, connect.CodeInvalidArgument)
	})
	t.Run("Move", func(t *testing.T) {
		src := filepath.Join(root, "src.txt")
		writeFile(t, src, "content")
		dst := filepath.Join(root, "new", "parent", "dst.txt")
		req := connect.NewRequest(&filesystem.MoveRequest{Source: src, Destination: dst})
		asUser(req)
		resp, err := e.fs.Move(ctxT(t, 30*time.Second), req)
		if err != nil {
			t.Fatalf("Move: %v", err)
		}
		if en := resp.Msg.GetEntry(); en == nil || en.GetPath() != dst || en.GetName() != "dst.txt" || en.GetSize() != 7 {
			t.Errorf("Move entry = %v", en)
		}
		if fi, err := os.Stat(filepath.Join(root, "new")); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != u.UID {
			t.Errorf("created parent not owned by the user: %v", err)
		}
		// Replaces an existing file like rename(2).
		other := filepath.Join(root, "other.txt")
		writeFile(t, other, "other")
		if _, err := e.fs.Move(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.MoveRequest{Source: other, Destination: dst})); err != nil {
			t.Fatalf("Move over existing: %v", err)
		}
		if b, _ := os.ReadFile(dst); string(b) != "other" {
			t.Errorf("destination holds %q after replace", b)
		}
		_, err = e.fs.Move(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.MoveRequest{Source: src, Destination: dst}))
		wantCode(t, err, connect.CodeNotFound)
	})
	t.Run("Move across filesystems", func(t *testing.T) {
		mnt := mountTmpfs(t, "")
		src := filepath.Join(root, "cross.txt")
		writeFile(t, src, "cross")
		dst := filepath.Join(mnt, "cross.txt")
		if _, err := e.fs.Move(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.MoveRequest{Source: src, Destination: dst})); err != nil {
			t.Fatalf("Move across filesystems: %v", err)
		}
		if b, err := os.ReadFile(dst); err != nil || string(b) != "cross" {
			t.Errorf("destination: %q, %v", b, err)
		}
		if _, err := os.Lstat(src); !os.IsNotExist(err) {
			t.Errorf("source still there: %v", err)
		}
	})
	t.Run("Remove", func(t *testing.T) {
		d := filepath.Join(root, "rm")
		if err := os.MkdirAll(filepath.Join(d, "a", "b"), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "a", "b", "f"), "x")
		for range 2 { // the second time the path is missing: not an error
			if _, err := e.fs.Remove(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.RemoveRequest{Path: d})); err != nil {
				t.Fatalf("Remove: %v", err)
			}
		}
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Fatalf("%s still exists: %v", d, err)
		}
	})
}

func TestPermissionDenied(t *testing.T) {
	e := startEnvd(t)
	mnt := mountTmpfs(t, "seed")
	remount(t, mnt, "ro")
	tests := []struct {
		name string
		call func() error
	}{
		{"MakeDir", func() error {
			_, err := e.fs.MakeDir(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.MakeDirRequest{Path: filepath.Join(mnt, "d")}))
			return err
		}},
		{"Remove", func() error {
			_, err := e.fs.Remove(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.RemoveRequest{Path: filepath.Join(mnt, "seed")}))
			return err
		}},
		{"Move", func() error {
			_, err := e.fs.Move(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.MoveRequest{Source: filepath.Join(mnt, "seed"), Destination: filepath.Join(mnt, "moved")}))
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.call(), connect.CodePermissionDenied)
		})
	}
	t.Run("upload", func(t *testing.T) {
		resp := upload(t, e, filepath.Join(mnt, "up.txt"), "", strings.NewReader("x"))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("upload into a read-only mount: %d, want 403", resp.StatusCode)
		}
	})
	e.requireHealthy(t)
}

func TestWatchDir(t *testing.T) {
	e := startEnvd(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	type ev struct {
		name      string
		typ       filesystem.EventType
		has       bool
		entryPath string
	}
	watch := func(t *testing.T, recursive bool) (<-chan ev, func()) {
		ctx, cancel := context2(t)
		s, err := e.fs.WatchDir(ctx, connect.NewRequest(&filesystem.WatchDirRequest{Path: dir, Recursive: recursive, IncludeEntry: true}))
		if err != nil {
			t.Fatal(err)
		}
		if !s.Receive() || s.Msg().GetStart() == nil {
			t.Fatalf("first WatchDir message is not start: %v %v", s.Msg(), s.Err())
		}
		ch := make(chan ev, 256)
		go func() {
			defer close(ch)
			for s.Receive() {
				if fe := s.Msg().GetFilesystem(); fe != nil {
					ch <- ev{fe.GetName(), fe.GetType(), fe.GetEntry() != nil, fe.GetEntry().GetPath()}
				}
			}
		}()
		return ch, func() { cancel(); _ = s.Close() }
	}
	collect := func(ch <-chan ev, until func([]ev) bool) []ev {
		var got []ev
		deadline := time.After(30 * time.Second)
		for !until(got) {
			select {
			case x, ok := <-ch:
				if !ok {
					return got
				}
				got = append(got, x)
			case <-deadline:
				return got
			}
		}
		return got
	}
	idx := func(evs []ev, name string, typ filesystem.EventType) int {
		return slices.IndexFunc(evs, func(x ev) bool { return x.name == name && x.typ == typ })
	}

	t.Run("recursive with entries", func(t *testing.T) {
		ch, stop := watch(t, true)
		defer stop()
		writeFile(t, filepath.Join(dir, "sub", "a.txt"), "data")
		if err := os.MkdirAll(filepath.Join(dir, "later"), 0o755); err != nil {
			t.Fatal(err)
		}
		// envd watches a new directory before it reports its creation: once
		// "later" is reported, b.txt is seen by the watch, not by the scan.
		evs := collect(ch, func(evs []ev) bool { return idx(evs, "later", filesystem.EventType_EVENT_TYPE_CREATE) >= 0 })
		if idx(evs, "later", filesystem.EventType_EVENT_TYPE_CREATE) < 0 {
			t.Fatalf("no create of later: %v", evs)
		}
		writeFile(t, filepath.Join(dir, "later", "b.txt"), "b")
		if err := os.Remove(filepath.Join(dir, "sub", "a.txt")); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, collect(ch, func(more []ev) bool {
			all := append(slices.Clip(evs), more...)
			return idx(all, "sub/a.txt", filesystem.EventType_EVENT_TYPE_REMOVE) >= 0 && idx(all, "later/b.txt", filesystem.EventType_EVENT_TYPE_CREATE) >= 0
		})...)
		c, w := idx(evs, "sub/a.txt", filesystem.EventType_EVENT_TYPE_CREATE), idx(evs, "sub/a.txt", filesystem.EventType_EVENT_TYPE_WRITE)
		if c < 0 || w < 0 || c > w {
			t.Fatalf("want create then write of sub/a.txt, got %v", evs)
		}
		if !evs[c].has || evs[c].entryPath != filepath.Join(dir, "sub", "a.txt") {
			t.Errorf("create event without the right entry: %+v", evs[c])
		}
		if r := idx(evs, "sub/a.txt", filesystem.EventType_EVENT_TYPE_REMOVE); r < 0 || evs[r].has {
			t.Errorf("remove event missing or with an entry: %v", evs)
		}
		if idx(evs, "later/b.txt", filesystem.EventType_EVENT_TYPE_CREATE) < 0 {
			t.Errorf("no event from a directory created after the watch: %v", evs)
		}
	})
	t.Run("not recursive", func(t *testing.T) {
		ch, stop := watch(t, false)
		defer stop()
		writeFile(t, filepath.Join(dir, "sub", "deep.txt"), "x")
		writeFile(t, filepath.Join(dir, "top.txt"), "x")
		evs := collect(ch, func(evs []ev) bool { return idx(evs, "top.txt", filesystem.EventType_EVENT_TYPE_CREATE) >= 0 })
		if idx(evs, "top.txt", filesystem.EventType_EVENT_TYPE_CREATE) < 0 {
			t.Fatalf("no create of top.txt: %v", evs)
		}
		for _, x := range evs {
			if strings.Contains(x.name, "deep.txt") {
				t.Errorf("non-recursive watch reported %v", x)
			}
		}
	})
	t.Run("upload through /files", func(t *testing.T) {
		// What the SDK's files.write does (conformance item 27): the
		// watcher sees the file itself created and then written.
		ch, stop := watch(t, true)
		defer stop()
		decodeWriteInfo(t, uploadMultipart(t, e, "", "", []part{{"file", filepath.Join(dir, "sub", "up.txt"), strings.NewReader("data")}}))
		evs := collect(ch, func(evs []ev) bool { return idx(evs, "sub/up.txt", filesystem.EventType_EVENT_TYPE_WRITE) >= 0 })
		c, w := idx(evs, "sub/up.txt", filesystem.EventType_EVENT_TYPE_CREATE), idx(evs, "sub/up.txt", filesystem.EventType_EVENT_TYPE_WRITE)
		if c < 0 || w < 0 || c > w {
			t.Errorf("want create then write of sub/up.txt, got %+v", evs)
		}
		for _, x := range evs {
			if x.name != "sub/up.txt" {
				t.Errorf("event for a path the client never wrote: %+v", x)
				break
			}
		}
	})
	t.Run("overwrite through /files", func(t *testing.T) {
		// Replacing an existing file goes through a hidden temporary file;
		// the watcher reports only a write of the file itself.
		ch, stop := watch(t, true)
		defer stop()
		decodeWriteInfo(t, uploadMultipart(t, e, "", "", []part{{"file", filepath.Join(dir, "sub", "up.txt"), strings.NewReader("new data")}}))
		evs := collect(ch, func(evs []ev) bool { return idx(evs, "sub/up.txt", filesystem.EventType_EVENT_TYPE_WRITE) >= 0 })
		if idx(evs, "sub/up.txt", filesystem.EventType_EVENT_TYPE_WRITE) < 0 {
			t.Errorf("want a write of sub/up.txt, got %+v", evs)
		}
		for _, x := range evs {
			if x.name != "sub/up.txt" || x.typ == filesystem.EventType_EVENT_TYPE_CREATE {
				t.Errorf("unexpected event %+v in %+v", x, evs)
				break
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tt := range []struct {
			path string
			code connect.Code
		}{
			{filepath.Join(dir, "top.txt"), connect.CodeInvalidArgument},
			{filepath.Join(dir, "missing"), connect.CodeNotFound},
		} {
			s, err := e.fs.WatchDir(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.WatchDirRequest{Path: tt.path}))
			if err == nil {
				for s.Receive() {
				}
				err = s.Err()
			}
			wantCode(t, err, tt.code)
			_, err = e.fs.CreateWatcher(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: tt.path}))
			wantCode(t, err, tt.code)
		}
	})
	t.Run("polling watcher", func(t *testing.T) {
		resp, err := e.fs.CreateWatcher(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: dir, Recursive: true}))
		if err != nil {
			t.Fatalf("CreateWatcher: %v", err)
		}
		id := resp.Msg.GetWatcherId()
		writeFile(t, filepath.Join(dir, "sub", "polled.txt"), "x")
		var names []string
		eventually(t, 30*time.Second, "polled create event", func() bool {
			r, err := e.fs.GetWatcherEvents(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
			if err != nil {
				t.Fatalf("GetWatcherEvents: %v", err)
			}
			for _, ev := range r.Msg.GetEvents() {
				names = append(names, ev.GetName()+":"+ev.GetType().String())
			}
			return slices.Contains(names, "sub/polled.txt:EVENT_TYPE_CREATE")
		})
		// The buffer was cleared by the reads above. A negative check: no
		// event may come back during this window; a slow machine can only
		// make it pass.
		time.Sleep(100 * time.Millisecond)
		r, err := e.fs.GetWatcherEvents(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range r.Msg.GetEvents() {
			if ev.GetName() == "sub/polled.txt" && ev.GetType() == filesystem.EventType_EVENT_TYPE_CREATE {
				t.Error("GetWatcherEvents returned an event twice")
			}
		}
		if _, err := e.fs.RemoveWatcher(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: id})); err != nil {
			t.Fatalf("RemoveWatcher: %v", err)
		}
		_, err = e.fs.GetWatcherEvents(ctxT(t, 30*time.Second), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
		wantCode(t, err, connect.CodeNotFound)
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// mountTmpfs mounts a small tmpfs on a fresh directory (with an empty file
// named seed, if given) and unmounts it when the test ends.
func mountTmpfs(t *testing.T, seed string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	if seed != "" {
		writeFile(t, filepath.Join(dir, seed), "seed")
	}
	return dir
}

func remount(t *testing.T, dir, opt string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opt, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v\n%s", dir, opt, err, out)
	}
}

func context2(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), 30*time.Second)
}
