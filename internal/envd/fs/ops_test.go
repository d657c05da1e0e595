package fs

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
	"github.com/wrenn/wrenn/internal/envd/defaults"
)

func TestStat(t *testing.T) {
	forCodecs(t, func(t *testing.T, e *env) {
		dir := t.TempDir()
		file := filepath.Join(dir, "f.txt")
		writeFile(t, file, "hello")
		if err := os.Chmod(file, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(file, aliceUID, aliceGID); err != nil {
			t.Fatal(err)
		}
		if err := SetMetadata(file, map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("f.txt", filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("missing", filepath.Join(dir, "dangling")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 99999, 99998); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(aliceHome, "rel.txt"), "x")
		t.Cleanup(func() { _ = os.Remove(filepath.Join(aliceHome, "rel.txt")) })

		tests := []struct {
			name, user, path string
			want             *filesystem.EntryInfo
			code             connect.Code
		}{
			{name: "file", path: file, want: &filesystem.EntryInfo{
				Name: "f.txt", Path: file, Type: filesystem.FileType_FILE_TYPE_FILE, Size: 5, Mode: 0o640,
				Permissions: "-rw-r-----", Owner: "alice", Group: "alicegrp", Metadata: map[string]string{"k": "v"},
			}},
			{name: "dir with unknown owner", path: dir, want: &filesystem.EntryInfo{
				Name: filepath.Base(dir), Path: dir, Type: filesystem.FileType_FILE_TYPE_DIRECTORY, Size: -1,
				Mode: 0o700, Permissions: "drwx------", Owner: "99999", Group: "99998",
			}},
			{name: "symlink", path: filepath.Join(dir, "link"), want: &filesystem.EntryInfo{
				Name: "link", Path: filepath.Join(dir, "link"), Type: filesystem.FileType_FILE_TYPE_FILE, Size: 5,
				Mode: 0o640, Permissions: "Lrwxrwxrwx", Owner: "root", Group: "root", SymlinkTarget: &file,
				Metadata: map[string]string{"k": "v"},
			}},
			{name: "dangling symlink", path: filepath.Join(dir, "dangling"), want: &filesystem.EntryInfo{
				Name: "dangling", Path: filepath.Join(dir, "dangling"), Type: filesystem.FileType_FILE_TYPE_UNSPECIFIED,
				Size: 7, Permissions: "Lrwxrwxrwx", Owner: "root", Group: "root",
			}},
			{name: "relative to user home", user: "alice", path: "rel.txt", want: &filesystem.EntryInfo{
				Name: "rel.txt", Path: filepath.Join(aliceHome, "rel.txt"), Type: filesystem.FileType_FILE_TYPE_FILE,
				Size: 1, Mode: 0o644, Permissions: "-rw-r--r--", Owner: "root", Group: "root",
			}},
			{name: "tilde", user: "alice", path: "~/rel.txt", want: &filesystem.EntryInfo{
				Name: "rel.txt", Path: filepath.Join(aliceHome, "rel.txt"), Type: filesystem.FileType_FILE_TYPE_FILE,
				Size: 1, Mode: 0o644, Permissions: "-rw-r--r--", Owner: "root", Group: "root",
			}},
			{name: "missing", path: filepath.Join(dir, "nope"), code: connect.CodeNotFound},
			{name: "unknown user", user: "mallory", path: file, code: connect.CodeUnauthenticated},
			{name: "other home", path: "~bob/x", code: connect.CodeInvalidArgument},
			{name: "not a dir on the way", path: file + "/x", code: connect.CodeInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req := connect.NewRequest(&filesystem.StatRequest{Path: tt.path})
				if tt.user != "" {
					req = as(tt.user, req)
				}
				res, err := e.client.Stat(ctxT(t), req)
				if tt.code != 0 {
					wantCode(t, err, tt.code)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				got := res.Msg.GetEntry()
				if got.GetModifiedTime() == nil {
					t.Fatal("no modified time")
				}
				got.ModifiedTime = nil
				if tt.want.Size == -1 { // directory sizes depend on the filesystem
					tt.want.Size = got.Size
				}
				if got.String() != tt.want.String() {
					t.Fatalf("entry\n got %v\nwant %v", got, tt.want)
				}
			})
		}
	})
}

func TestDefaultUserAndWorkdir(t *testing.T) {
	e := newEnv(t, true)
	writeFile(t, filepath.Join(aliceHome, "w", "x.txt"), "x")
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(aliceHome, "w")) })
	empty := ""
	if _, err := e.store.Apply(defaults.Update{DefaultUser: "alice", DefaultWorkdir: filepath.Join(aliceHome, "w"), AccessToken: &empty}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := e.client.Stat(ctxT(t), connect.NewRequest(&filesystem.StatRequest{Path: "w/x.txt"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Msg.GetEntry().GetPath(); got != filepath.Join(aliceHome, "w", "x.txt") {
		t.Fatalf("relative path resolved to %s, want it under the default user's home", got)
	}
	list, err := e.client.ListDir(ctxT(t), connect.NewRequest(&filesystem.ListDirRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Msg.GetEntries()); n != 1 || list.Msg.GetEntries()[0].GetName() != "x.txt" {
		t.Fatalf("empty path should list the default workdir, got %v", list.Msg.GetEntries())
	}
}

func TestListDir(t *testing.T) {
	forCodecs(t, func(t *testing.T, e *env) {
		root := t.TempDir()
		writeFile(t, filepath.Join(root, "b", "c", "deep.txt"), "d")
		writeFile(t, filepath.Join(root, "b", "x.txt"), "x")
		writeFile(t, filepath.Join(root, "a.txt"), "a")
		must(t, SetMetadata(filepath.Join(root, "b", "x.txt"), map[string]string{"k": "v"}))
		must(t, os.Symlink("b", filepath.Join(root, "lnk")))
		must(t, os.Symlink("loop2", filepath.Join(root, "loop1")))
		must(t, os.Symlink("loop1", filepath.Join(root, "loop2")))
		rootLink := mustSymlink(t, root)
		loopDir := t.TempDir()
		must(t, os.Symlink("self", filepath.Join(loopDir, "self")))

		tests := []struct {
			name  string
			path  string
			depth uint32
			want  []string
			code  connect.Code
		}{
			{name: "depth 0 means 1", path: root, depth: 0, want: []string{"a.txt", "b", "lnk", "loop1", "loop2"}},
			{name: "depth 1", path: root, depth: 1, want: []string{"a.txt", "b", "lnk", "loop1", "loop2"}},
			{name: "depth 2", path: root, depth: 2, want: []string{"a.txt", "b", "b/c", "b/x.txt", "lnk", "loop1", "loop2"}},
			{name: "depth 5", path: root, depth: 5, want: []string{"a.txt", "b", "b/c", "b/c/deep.txt", "b/x.txt", "lnk", "loop1", "loop2"}},
			{name: "symlinked root", path: rootLink, depth: 2, want: []string{"a.txt", "b", "b/c", "b/x.txt", "lnk", "loop1", "loop2"}},
			{name: "missing", path: filepath.Join(root, "nope"), code: connect.CodeNotFound},
			{name: "file", path: filepath.Join(root, "a.txt"), code: connect.CodeInvalidArgument},
			{name: "root symlink loop", path: filepath.Join(loopDir, "self"), code: connect.CodeFailedPrecondition},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := e.client.ListDir(ctxT(t), connect.NewRequest(&filesystem.ListDirRequest{Path: tt.path, Depth: tt.depth}))
				if tt.code != 0 {
					wantCode(t, err, tt.code)
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, en := range res.Msg.GetEntries() {
					rel, err := filepath.Rel(tt.path, en.GetPath())
					if err != nil || filepath.Join(tt.path, rel) != en.GetPath() {
						t.Fatalf("entry path %s is not below the requested %s", en.GetPath(), tt.path)
					}
					got = append(got, rel)
					switch en.GetName() {
					case "lnk":
						if en.GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY || en.GetSymlinkTarget() != filepath.Join(root, "b") {
							t.Errorf("lnk entry = %v", en)
						}
					case "loop1":
						if en.GetType() != filesystem.FileType_FILE_TYPE_UNSPECIFIED || en.SymlinkTarget != nil {
							t.Errorf("loop1 entry = %v", en)
						}
					case "x.txt":
						if !maps.Equal(en.GetMetadata(), map[string]string{"k": "v"}) {
							t.Errorf("x.txt metadata = %v", en.GetMetadata())
						}
					case "a.txt":
						if en.Metadata != nil {
							t.Errorf("a.txt metadata = %v", en.GetMetadata())
						}
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("entries %q, want %q", got, tt.want)
				}
			})
		}
	})
}

func mustSymlink(t *testing.T, target string) string {
	t.Helper()
	l := filepath.Join(t.TempDir(), "rootlink")
	must(t, os.Symlink(target, l))
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func owner(t *testing.T, path string) (uid, gid uint32, perm os.FileMode) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := info.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, info.Mode().Perm()
}

func TestMakeDir(t *testing.T) {
	e := newEnv(t, false)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "file"), "x")
	must(t, os.Mkdir(filepath.Join(root, "exists"), 0o700))
	ro := mountTmpfs(t, "ro,size=1m")

	t.Run("nested as user", func(t *testing.T) {
		target := filepath.Join(root, "n1", "n2", "n3")
		res, err := e.client.MakeDir(ctxT(t), as("alice", connect.NewRequest(&filesystem.MakeDirRequest{Path: target})))
		if err != nil {
			t.Fatal(err)
		}
		en := res.Msg.GetEntry()
		if en.GetPath() != target || en.GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY || en.GetOwner() != "alice" {
			t.Fatalf("entry = %v", en)
		}
		for _, p := range []string{filepath.Join(root, "n1"), filepath.Join(root, "n1", "n2"), target} {
			if uid, gid, perm := owner(t, p); uid != aliceUID || gid != aliceGID || perm != 0o755 {
				t.Errorf("%s: owner %d:%d mode %o, want %d:%d 755", p, uid, gid, perm, aliceUID, aliceGID)
			}
		}
		if uid, _, _ := owner(t, root); uid != 0 {
			t.Errorf("existing parent re-owned to %d", uid)
		}
	})
	tests := []struct {
		name, path string
		code       connect.Code
	}{
		{"existing dir", filepath.Join(root, "exists"), connect.CodeAlreadyExists},
		{"existing file", filepath.Join(root, "file"), connect.CodeInvalidArgument},
		{"file on the way", filepath.Join(root, "file", "sub"), connect.CodeInvalidArgument},
		{"read-only filesystem", filepath.Join(ro, "d"), connect.CodePermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.MakeDir(ctxT(t), connect.NewRequest(&filesystem.MakeDirRequest{Path: tt.path}))
			wantCode(t, err, tt.code)
		})
	}
}

func TestMove(t *testing.T) {
	e := newEnv(t, true)
	root := t.TempDir()
	other := mountTmpfs(t, "size=4m") // another filesystem, for EXDEV
	ro := mountTmpfs(t, "ro,size=1m")

	t.Run("rename creates parents owned by user", func(t *testing.T) {
		writeFile(t, filepath.Join(root, "src.txt"), "data")
		dst := filepath.Join(root, "p1", "p2", "dst.txt")
		res, err := e.client.Move(ctxT(t), as("alice", connect.NewRequest(&filesystem.MoveRequest{Source: filepath.Join(root, "src.txt"), Destination: dst})))
		if err != nil {
			t.Fatal(err)
		}
		if en := res.Msg.GetEntry(); en.GetPath() != dst || en.GetSize() != 4 || en.GetType() != filesystem.FileType_FILE_TYPE_FILE {
			t.Fatalf("entry = %v", en)
		}
		if uid, gid, _ := owner(t, filepath.Join(root, "p1", "p2")); uid != aliceUID || gid != aliceGID {
			t.Fatalf("parent owned by %d:%d", uid, gid)
		}
		if _, err := os.Lstat(filepath.Join(root, "src.txt")); !os.IsNotExist(err) {
			t.Fatalf("source still there: %v", err)
		}
	})
	t.Run("replaces existing file", func(t *testing.T) {
		writeFile(t, filepath.Join(root, "r1"), "new")
		writeFile(t, filepath.Join(root, "r2"), "old content")
		if _, err := e.client.Move(ctxT(t), connect.NewRequest(&filesystem.MoveRequest{Source: filepath.Join(root, "r1"), Destination: filepath.Join(root, "r2")})); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "r2")); string(b) != "new" {
			t.Fatalf("destination holds %q", b)
		}
	})
	t.Run("across filesystems", func(t *testing.T) {
		writeFile(t, filepath.Join(root, "tree", "sub", "f.txt"), "payload")
		must(t, os.Symlink("sub/f.txt", filepath.Join(root, "tree", "l")))
		must(t, os.Chown(filepath.Join(root, "tree", "sub", "f.txt"), aliceUID, aliceGID))
		must(t, SetMetadata(filepath.Join(root, "tree", "sub", "f.txt"), map[string]string{"m": "1"}))
		dst := filepath.Join(other, "moved")
		res, err := e.client.Move(ctxT(t), connect.NewRequest(&filesystem.MoveRequest{Source: filepath.Join(root, "tree"), Destination: dst}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.GetEntry().GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY {
			t.Fatalf("entry = %v", res.Msg.GetEntry())
		}
		if b, err := os.ReadFile(filepath.Join(dst, "l")); err != nil || string(b) != "payload" {
			t.Fatalf("copied symlink reads %q, %v", b, err)
		}
		if uid, _, perm := owner(t, filepath.Join(dst, "sub", "f.txt")); uid != aliceUID || perm != 0o644 {
			t.Fatalf("copied file owner %d mode %o", uid, perm)
		}
		if md, err := ReadMetadata(filepath.Join(dst, "sub", "f.txt")); err != nil || md["m"] != "1" {
			t.Fatalf("copied file metadata %v, %v", md, err)
		}
		if _, err := os.Lstat(filepath.Join(root, "tree")); !os.IsNotExist(err) {
			t.Fatalf("source still there: %v", err)
		}
		ents, _ := os.ReadDir(other)
		if len(ents) != 1 {
			t.Fatalf("leftovers on the destination filesystem: %v", ents)
		}
	})
	tests := []struct {
		name, src, dst string
		code           connect.Code
	}{
		{"missing source", filepath.Join(root, "nope"), filepath.Join(root, "x"), connect.CodeNotFound},
		{"into read-only filesystem", filepath.Join(root, "p1"), filepath.Join(ro, "x"), connect.CodePermissionDenied},
		{"unknown user", filepath.Join(root, "p1"), filepath.Join(root, "x"), connect.CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := connect.NewRequest(&filesystem.MoveRequest{Source: tt.src, Destination: tt.dst})
			if tt.code == connect.CodeUnauthenticated {
				req = as("mallory", req)
			}
			_, err := e.client.Move(ctxT(t), req)
			wantCode(t, err, tt.code)
		})
	}
}

func TestRemove(t *testing.T) {
	e := newEnv(t, false)
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "tree", "a", "b.txt"), "x")
	writeFile(t, filepath.Join(root, "f.txt"), "x")
	writeFile(t, filepath.Join(root, "locked", "f.txt"), "x")
	immutable(t, filepath.Join(root, "locked", "f.txt"))

	tests := []struct {
		name, path string
		code       connect.Code
	}{
		{"file", filepath.Join(root, "f.txt"), 0},
		{"tree", filepath.Join(root, "tree"), 0},
		{"missing is fine", filepath.Join(root, "nope"), 0},
		{"immutable file", filepath.Join(root, "locked"), connect.CodePermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.Remove(ctxT(t), connect.NewRequest(&filesystem.RemoveRequest{Path: tt.path}))
			if tt.code != 0 {
				wantCode(t, err, tt.code)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(tt.path); !os.IsNotExist(err) {
				t.Fatalf("%s still exists: %v", tt.path, err)
			}
		})
	}
}
