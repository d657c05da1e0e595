package gvisor

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/testutil"
)

// The tests here build hostile trees and layers on the host and check that
// the image code stays inside its roots (docs/security.md, "Host-side file
// handling").

// outsideDir makes a directory standing in for the host outside a tree: a
// "shadow" file and an empty "etc", checked unchanged by checkOutside.
func outsideDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "shadow"), "root:secret", 0o600)
	if err := os.Mkdir(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkOutside fails t if anything in the outside directory changed: new
// or removed entries, or the shadow file's content or mode.
func checkOutside(t *testing.T, dir string) {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, strings.TrimPrefix(p, dir))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"", "/etc", "/shadow"}; !slices.Equal(names, want) {
		t.Errorf("outside the root: %q, want %q", names, want)
	}
	fi, err := os.Stat(filepath.Join(dir, "shadow"))
	if b, _ := os.ReadFile(filepath.Join(dir, "shadow")); err != nil || string(b) != "root:secret" || fi.Mode() != 0o600 {
		t.Errorf("shadow outside the root changed: %q, %v", b, fi.Mode())
	}
}

// TestCopyTreeHostileTree copies a tree whose symlinks point out of it, loop
// or stand where the copy writes: symlinks stay symlinks, nothing outside
// either tree is followed, read or written.
func TestCopyTreeHostileTree(t *testing.T) {
	testutil.RequireRoot(t)
	outside := outsideDir(t)
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "d/file"), "data", 0o644)
	for _, err := range []error{
		os.Symlink(outside, filepath.Join(src, "etc")),                          // a directory outside
		os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(src, "abs")), // a host file
		os.Symlink("loop2", filepath.Join(src, "loop1")),
		os.Symlink("loop1", filepath.Join(src, "loop2")),
		os.Symlink("self", filepath.Join(src, "d/self")),
		os.Symlink("../../..", filepath.Join(src, "d/up")),
		os.Link(filepath.Join(outside, "shadow"), filepath.Join(src, "hard")), // hard link to a host file
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(t.TempDir(), "copy")
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(t.Context(), src, dst); err != nil {
		t.Fatal(err)
	}
	checkOutside(t, outside)
	for name, target := range map[string]string{
		"etc": outside, "abs": filepath.Join(outside, "shadow"),
		"loop1": "loop2", "loop2": "loop1", "d/self": "self", "d/up": "../../..",
	} {
		if got, err := os.Readlink(filepath.Join(dst, name)); err != nil || got != target {
			t.Errorf("%s: %q, %v; want a symlink to %q", name, got, err, target)
		}
	}
	var host, copied unix.Stat_t
	if err := unix.Lstat(filepath.Join(outside, "shadow"), &host); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(dst, "hard"), &copied); err != nil {
		t.Fatal(err)
	}
	if host.Nlink != 2 || copied.Ino == host.Ino || copied.Nlink != 1 {
		t.Errorf("hard link copied as a link to the host file: host inode %d (%d links), copy %d (%d links)",
			host.Ino, host.Nlink, copied.Ino, copied.Nlink)
	}

	t.Run("symlink in the destination", func(t *testing.T) {
		// The destination must be empty; should it hold a symlink where a
		// directory goes, the copy fails rather than write through it.
		dst := t.TempDir()
		if err := os.Symlink(filepath.Join(outside, "etc"), filepath.Join(dst, "d")); err != nil {
			t.Fatal(err)
		}
		if err := copyTree(t.Context(), src, dst); err == nil {
			t.Error("copied into a destination with a symlink in the way; want an error")
		}
		checkOutside(t, outside)
	})
}

// TestOpenNoFollowSwapped checks the guard against a directory replaced by
// a symlink between copyTree's lstat and open.
func TestOpenNoFollowSwapped(t *testing.T) {
	outside := outsideDir(t)
	src := t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	sfd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, "d", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		os.Rename(filepath.Join(src, "d"), filepath.Join(src, "moved")),
		os.Symlink(outside, filepath.Join(src, "d")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if fd, err := openNoFollow(sfd, "d", unix.O_DIRECTORY, &st); err == nil {
		unix.Close(fd)
		t.Fatal("opened a directory swapped for a symlink")
	}
	// A directory swapped for another directory is refused too.
	if err := os.Remove(filepath.Join(src, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if fd, err := openNoFollow(sfd, "d", unix.O_DIRECTORY, &st); err == nil {
		unix.Close(fd)
		t.Fatal("opened a directory other than the one copied")
	}
}

// TestApplyUpperSanitizes applies a layer with device nodes, setuid and
// setgid files and privileged xattrs: none of them reaches the image.
func TestApplyUpperSanitizes(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	mustWrite(t, filepath.Join(root, "bin/tool"), "lower", 0o755)
	xattrs := map[string]string{
		"user.keep":           "kept",
		"security.capability": "\x01\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00",
		"security.selinux":    "system_u:object_r:shadow_t:s0",
		"trusted.evil":        "x",
	}
	layer := buildTar(t, []tarEntry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "./dev/mem", typ: tar.TypeChar, mode: 0o666},                        // 1,3 below
		{name: "./dev/sda", typ: tar.TypeBlock, mode: 0o666},                       // 8,0 below
		{name: "./dev/mem2", typ: tar.TypeLink, link: "./dev/mem"},                 // a link to a device left out
		{name: "./bin/", typ: tar.TypeDir, mode: 0o755},                            //
		{name: "./bin/tool", typ: tar.TypeChar, mode: 0o666},                       // a device replacing a file
		{name: "./suid", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o4755},      //
		{name: "./sgid", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o2755},      //
		{name: "./shared/", typ: tar.TypeDir, mode: 0o2775},                        // setgid directory: kept
		{name: "./caps", typ: tar.TypeReg, body: "x", mode: 0o755, xattrs: xattrs}, //
		{name: "./fifo", typ: tar.TypeFifo, mode: 0o4644},                          //
	})
	// buildTar has no device numbers: set them in the stream's headers.
	layer = setDevices(t, layer, map[string][2]int64{"./dev/mem": {1, 3}, "./dev/sda": {8, 0}, "./bin/tool": {1, 5}})
	if err := applyUpper(t.Context(), root, strings.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"dev/mem", "dev/sda", "dev/mem2", "bin/tool"} {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v; want no file (device nodes are left out)", p, err)
		}
	}
	for p, want := range map[string]uint32{"suid": 0o755, "sgid": 0o755, "shared": 0o2775, "fifo": 0o644, "caps": 0o755} {
		if st := lstat(t, root, p); st.Mode&0o7777 != want {
			t.Errorf("%s: mode %o, want %o", p, st.Mode&0o7777, want)
		}
	}
	names, err := listXattrs(filepath.Join(root, "caps"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "user.") {
			t.Errorf("caps has xattr %s; want only user.*", n)
		}
	}
	if v, err := getXattr(filepath.Join(root, "caps"), "user.keep"); err != nil || string(v) != "kept" {
		if probeUserXattr(t, root) {
			t.Errorf("user.keep: %q, %v; want it kept", v, err)
		} else {
			t.Logf("user.* not checked: the file system of %s has no user xattrs", root)
		}
	}
	checkNoDevices(t, root)
}

// setDevices rewrites the device numbers of the named entries of a tar
// stream.
func setDevices(t *testing.T, layer string, devs map[string][2]int64) string {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(layer))
	var b strings.Builder
	tw := tar.NewWriter(&b)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := devs[h.Name]; ok {
			h.Devmajor, h.Devminor = d[0], d[1]
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// probeUserXattr reports whether dir's file system takes user.* xattrs.
func probeUserXattr(t *testing.T, dir string) bool {
	p := filepath.Join(dir, ".xattr-probe")
	mustWrite(t, p, "", 0o644)
	defer os.Remove(p)
	return unix.Setxattr(p, "user.probe", []byte("1"), 0) == nil
}

// checkNoDevices fails t if root holds a device node, a setuid or setgid
// file, or an xattr outside user.* and POSIX ACLs.
func checkNoDevices(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		switch typ := st.Mode & unix.S_IFMT; {
		case typ == unix.S_IFCHR || typ == unix.S_IFBLK:
			t.Errorf("%s is a device node", p)
		case typ != unix.S_IFDIR && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0:
			t.Errorf("%s has mode %o", p, st.Mode&0o7777)
		}
		names, _ := listXattrs(p)
		for _, n := range names {
			if !keptXattr(n) {
				t.Errorf("%s has xattr %s", p, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrepareImageConfined checks that a flattened image's symlinks at the
// mount points make PrepareImage fail, not create files on the host.
func TestPrepareImageConfined(t *testing.T) {
	for name, links := range map[string]map[string]string{
		".wrenn to the host":   {".wrenn": "OUTSIDE"},
		".wrenn/bin to host":   {".wrenn/bin": "OUTSIDE/etc"},
		"etc to the host":      {"etc": "OUTSIDE/etc"},
		"etc relative escape":  {"etc": "../../../../../../../../OUTSIDE/etc"},
		".wrenn/meta to host":  {".wrenn/meta": "OUTSIDE"},
		"resolv.conf dangling": {"etc/resolv.conf": "OUTSIDE/etc/resolv.conf"},
	} {
		t.Run(name, func(t *testing.T) {
			outside := outsideDir(t)
			root := t.TempDir()
			for p, target := range links {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
					t.Fatal(err)
				}
				target = strings.ReplaceAll(target, "OUTSIDE", strings.TrimPrefix(outside, "/"))
				if !strings.HasPrefix(target, "..") {
					target = "/" + target
				}
				if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
					t.Fatal(err)
				}
			}
			err := PrepareImage(root)
			t.Log(err)
			if dangling := name == "resolv.conf dangling"; dangling != (err == nil) {
				t.Errorf("PrepareImage: %v; want an error unless only resolv.conf is a symlink", err)
			}
			checkOutside(t, outside)
		})
	}
	t.Run("plain", func(t *testing.T) {
		root := t.TempDir()
		if err := PrepareImage(root); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{EnvdPath, MetadataMount, ResolvConf} {
			if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
				t.Error(err)
			}
		}
	})
}

// FuzzApplyUpper applies layers made of entries drawn from hostile names,
// link targets, types, modes and xattrs on top of a tree holding a symlink
// out of it, and checks the invariants of applyUpper: nothing outside the
// root changes, and the root holds no device node, no setuid or setgid
// file and no xattr but user.* and ACLs. Each 4 bytes of input make an
// entry: type, name, link target, mode and xattr.
func FuzzApplyUpper(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 6, 0, 1})                          // root, then out/x
	f.Add([]byte{0, 0, 0, 0, 2, 7, 1, 0, 1, 8, 0, 1})              // symlink l -> outside, then l/x
	f.Add([]byte{0, 0, 0, 0, 0, 2, 0, 0, 2, 2, 1, 0, 1, 4, 0, 0})  // dir a, a replaced by a symlink, a/b
	f.Add([]byte{0, 0, 0, 0, 4, 12, 0, 0, 3, 13, 10, 0})           // device dev/null, hard link h2 to it
	f.Add([]byte{0, 0, 0, 0, 1, 13, 0, 2, 1, 3, 0, 3, 6, 5, 0, 3}) // setuid and setgid files, fifo
	f.Add([]byte{0, 0, 0, 0, 3, 13, 8, 0, 3, 13, 11, 0})           // hard links through out and ..
	f.Add([]byte{7, 1, 0, 0, 7, 5, 0, 0, 3, 9, 9, 0})              // whiteouts
	f.Fuzz(func(t *testing.T, data []byte) {
		testutil.RequireRoot(t)
		if len(data) > 64 {
			data = data[:64]
		}
		outside := outsideDir(t)
		root := t.TempDir()
		mustWrite(t, filepath.Join(root, "a/b"), "lower", 0o644)
		mustWrite(t, filepath.Join(root, "h"), "lower", 0o644)
		if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
			t.Fatal(err)
		}
		layer := fuzzLayer(t, data, outside)
		_ = applyUpper(t.Context(), root, strings.NewReader(layer))
		checkOutside(t, outside)
		checkNoDevices(t, root)
	})
}

// fuzzLayer turns data into a layer (see FuzzApplyUpper).
func fuzzLayer(t *testing.T, data []byte, outside string) string {
	names := []string{"./", ".", "./a/", "./a", "./a/b", "./../x", "./out/x", "./l", "./l/x",
		"/abs", "./a/../h", "./dev/", "./dev/null", "./h2", "./out/", "a/c"}
	links := []string{"/etc", "OUTSIDE", "..", "./a", "./out", "../../..", "./l", "./a/b",
		"./out/shadow", "./h", "./dev/null", "./../x", ""}
	modes := []int64{0o755, 0o644, 0o4755, 0o2755, 0o6777, 0o1777, 0o2775, 0o600}
	xattrs := []map[string]string{nil, {"user.a": "1"}, {"security.capability": "x"},
		{"trusted.overlay.opaque": "y"}, {"security.selinux": "s", "user.b": "2"},
		{"system.posix_acl_access": "AgAAAA"}, {"trusted.x": "1"}, {"user.overlay.opaque": "y"}}
	types := []byte{tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeChar,
		tar.TypeBlock, tar.TypeFifo, tar.TypeChar}
	var b strings.Builder
	tw := tar.NewWriter(&b)
	for i := 0; i+4 <= len(data); i += 4 {
		kind := int(data[i]) % len(types)
		typ := types[kind]
		h := &tar.Header{
			Typeflag: typ,
			Name:     names[int(data[i+1])%len(names)],
			Linkname: links[int(data[i+2])%len(links)],
			Mode:     modes[int(data[i+3])%len(modes)],
			ModTime:  time.Unix(1e9, 0),
		}
		if h.Linkname == "OUTSIDE" {
			h.Linkname = outside
		}
		if kind == 4 || kind == 5 { // 7 is a whiteout, 0/0
			h.Devmajor, h.Devminor = 1, 3
		}
		for k, v := range xattrs[int(data[i+3]>>3)%len(xattrs)] {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[paxXattr+k] = v
		}
		var body string
		if typ == tar.TypeReg {
			body = "data"
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			continue // a header tar cannot write: not a layer
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
