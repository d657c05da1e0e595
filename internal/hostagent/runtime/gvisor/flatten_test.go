package gvisor

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// TestFlatten changes a capsule's files in every way the upper layer can
// record, flattens it, checks the new image on the host, then boots a new
// capsule from it and checks the changes from inside.
func TestFlatten(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	img := f.image.Path
	for name, content := range map[string]string{
		"etc/motd":      "welcome\n",
		"rm-a":          "a",
		"rm-b":          "b",
		"data/y":        "y",
		"data/sub/x":    "x",
		"keep/dir/file": "kept",
		"links/one":     "linked",
	} {
		mustWrite(t, filepath.Join(img, name), content, 0o644)
	}
	if err := os.Link(filepath.Join(img, "links/one"), filepath.Join(img, "links/two")); err != nil {
		t.Fatal(err)
	}
	net1, net2 := newNet(t), newNet(t)
	specA := f.spec(t, "cl-flat-a", net1)
	f.destroyAtEnd(t, specA.ID)
	if err := f.rt.Create(ctx, specA); err != nil {
		t.Fatal(err)
	}
	a := newEnvdClient(net1.InsideIP)
	a.waitHealthy(t)
	imageBefore := describeTree(t, img)

	a.writeFile(t, "/root/new.txt", "new file")
	a.writeFile(t, "/etc/motd", "changed\n")
	bigSum := a.sh(t, strings.Join([]string{
		"rm /etc/group /rm-a /rm-b",                           // whiteout, then links to it
		"mkdir -p /opt/d && ln -s ../../etc/motd /opt/d/link", // new directory with a symlink
		"chown 1000:1001 /root/new.txt && chmod 4750 /root/new.txt",
		"chmod 600 /etc/passwd",
		"rm -rf /data && mkdir /data && echo q > /data/q", // opaque directory
		"ln /root/new.txt /root/hard.txt",
		"mkfifo /root/fifo",
		"echo changed > /links/one", // breaks the image's hard link
		"dd if=/dev/urandom of=/root/big bs=1M count=8 2>/dev/null",
		"sync",
		"sha256sum /root/big | cut -d' ' -f1",
	}, "; "))
	bigSum = strings.TrimSpace(bigSum)

	dst := filepath.Join(t.TempDir(), "flat")
	start := time.Now()
	flat, err := f.rt.Flatten(ctx, specA.ID, dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flatten: %v", time.Since(start))

	if flat.Path != dst || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(flat.ID) || flat.ID == f.image.ID {
		t.Errorf("Flatten = %+v, want path %s and a new sha256 id", flat, dst)
	}
	if got := describeTree(t, img); !maps2Equal(got, imageBefore) {
		t.Errorf("Flatten changed the image:\n%s", diffTrees(imageBefore, got))
	}
	for _, leftover := range []string{dst + ".tmp", filepath.Join(f.rt.capsuleDir(specA.ID), "rootfs-upper-*.tar")} {
		if m, _ := filepath.Glob(leftover); len(m) > 0 {
			t.Errorf("Flatten left %v", m)
		}
	}

	// On the host: the image's entries, but for the changed ones.
	got := describeTree(t, dst)
	changed := regexp.MustCompile(`^/(|etc|root|links|etc/(motd|group|passwd)|rm-[ab]|data(/.*)?|opt(/.*)?|root/.*|links/.*)$`)
	for p, want := range imageBefore {
		if !changed.MatchString(p) && got[p] != want {
			t.Errorf("%s: %q, want it unchanged: %q", p, got[p], want)
		}
	}
	for p := range got {
		if _, ok := imageBefore[p]; !ok && !changed.MatchString(p) {
			t.Errorf("unexpected new entry %s: %s", p, got[p])
		}
	}
	for _, p := range []string{"etc/group", "rm-a", "rm-b", "data/y", "data/sub"} {
		if _, err := os.Lstat(filepath.Join(dst, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("deleted %s: %v, want not there", p, err)
		}
	}
	// The setuid bit the capsule set is dropped (docs/security.md).
	checkFile(t, dst, "root/new.txt", "new file", 0o750, 1000, 1001)
	checkFile(t, dst, "etc/motd", "changed\n", 0o644, 0, 0)
	checkFile(t, dst, "data/q", "q\n", 0o644, 0, 0)
	checkFile(t, dst, "links/one", "changed\n", 0o644, 0, 0)
	checkFile(t, dst, "links/two", "linked", 0o644, 0, 0)
	if st := lstat(t, dst, "etc/passwd"); st.Mode&0o7777 != 0o600 {
		t.Errorf("etc/passwd mode %o, want 600", st.Mode&0o7777)
	}
	if n, h := lstat(t, dst, "root/new.txt"), lstat(t, dst, "root/hard.txt"); n.Ino != h.Ino || n.Nlink != 2 {
		t.Errorf("root/hard.txt is not a hard link of root/new.txt: inodes %d %d, %d links", n.Ino, h.Ino, n.Nlink)
	}
	if target, err := os.Readlink(filepath.Join(dst, "opt/d/link")); err != nil || target != "../../etc/motd" {
		t.Errorf("opt/d/link -> %q, %v", target, err)
	}
	if st := lstat(t, dst, "root/fifo"); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("root/fifo mode %o, want a FIFO", st.Mode)
	}
	if sum := fileSum(t, filepath.Join(dst, "root/big")); sum != bigSum {
		t.Errorf("root/big sha256 %s, capsule had %s", sum, bigSum)
	}

	if _, err := f.rt.Flatten(ctx, specA.ID, dst); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Flatten into an existing directory: %v, want ErrExist", err)
	}
	if _, err := f.rt.Flatten(ctx, "cl-unknown", filepath.Join(t.TempDir(), "x")); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Flatten of an unknown capsule: %v, want ErrNotFound", err)
	}

	// A new capsule boots from the flattened image and sees the changes.
	specB := f.spec(t, "cl-flat-b", net2)
	specB.Image = flat
	f.destroyAtEnd(t, specB.ID)
	if err := f.rt.Create(ctx, specB); err != nil {
		t.Fatal(err)
	}
	b := newEnvdClient(net2.InsideIP)
	b.waitHealthy(t)
	for p, want := range map[string]string{
		"/root/new.txt": "new file", "/root/hard.txt": "new file", "/etc/motd": "changed\n",
		"/opt/d/link": "changed\n", "/data/q": "q\n", "/keep/dir/file": "kept",
	} {
		if got := b.readFile(t, p); got != want {
			t.Errorf("new capsule: %s = %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"/etc/group", "/rm-a", "/rm-b", "/data/y"} {
		if code, body := b.do(t, http.MethodGet, "/files?username=root&path="+p, "", nil); code != http.StatusNotFound {
			t.Errorf("new capsule: GET %s: %d %s, want 404", p, code, body)
		}
	}
	want := "750 1000 1001\n600 0 0\n../../etc/motd\nfifo\n" + bigSum + "\n"
	if got := b.sh(t, "stat -c '%a %u %g' /root/new.txt /etc/passwd; readlink /opt/d/link; "+
		"[ -p /root/fifo ] && echo fifo; sha256sum /root/big | cut -d' ' -f1"); got != want {
		t.Errorf("new capsule sees:\n%s\nwant:\n%s", got, want)
	}

	for _, id := range []string{specA.ID, specB.ID} {
		if err := f.rt.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	f.requireClean(t)
}

// TestApplyUpper applies hand-made layers: the overlay conventions, and
// entries that try to leave the root.
func TestApplyUpper(t *testing.T) {
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "secret"), "secret", 0o644)
	newRoot := func(t *testing.T) string {
		root := t.TempDir()
		mustWrite(t, filepath.Join(root, "dir/old"), "old", 0o644)
		mustWrite(t, filepath.Join(root, "file"), "file", 0o644)
		if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
			t.Fatal(err)
		}
		return root
	}
	dir := func(name string, opaque bool) tarEntry {
		e := tarEntry{name: name, typ: tar.TypeDir, mode: 0o755}
		e.opaque = opaque
		return e
	}

	t.Run("overlay", func(t *testing.T) {
		root := newRoot(t)
		mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		layer := buildTar(t, []tarEntry{
			dir("./", false),
			{name: "./file", typ: tar.TypeChar},                // whiteout
			{name: "./out", typ: tar.TypeLink, link: "./file"}, // link to a whiteout: a whiteout
			dir("./dir/", true),                                // opaque: hides dir/old
			{name: "./dir/new", typ: tar.TypeReg, body: "new", mode: 0o640, uid: 7, gid: 8, mtime: mtime,
				xattrs: map[string]string{"user.test": "v", "trusted.overlay.origin": "x"}},
			{name: "./dir/new2", typ: tar.TypeLink, link: "./dir/new"},
			{name: "./dir/sym", typ: tar.TypeSymlink, link: "/etc/passwd"},
		})
		if err := applyUpper(t.Context(), root, strings.NewReader(layer)); err != nil {
			t.Fatal(err)
		}
		tree := describeTree(t, root)
		want := map[string]string{
			"/":         "dir 755 0:0 1000000000",
			"/dir":      "dir 755 0:0 1000000000",
			"/dir/new":  fmt.Sprintf("file 640 7:8 %d link=/dir/new sha=%s user.test=v", mtime.Unix(), sha("new")),
			"/dir/new2": fmt.Sprintf("file 640 7:8 %d link=/dir/new sha=%s user.test=v", mtime.Unix(), sha("new")),
			"/dir/sym":  "symlink -> /etc/passwd",
		}
		if !maps2Equal(tree, want) {
			t.Errorf("tree after apply:\n%s", diffTrees(want, tree))
		}
	})

	bad := map[string][]tarEntry{
		"dotdot":            {{name: "./../escape", typ: tar.TypeReg, body: "x"}},
		"absolute":          {{name: "/escape", typ: tar.TypeReg, body: "x"}},
		"through symlink":   {{name: "./out/secret", typ: tar.TypeReg, body: "pwned"}},
		"through new link":  {{name: "./l", typ: tar.TypeSymlink, link: outside}, {name: "./l/secret", typ: tar.TypeReg, body: "pwned"}},
		"dir then symlink":  {dir("./d/", false), {name: "./d", typ: tar.TypeSymlink, link: outside}, {name: "./d/secret", typ: tar.TypeReg, body: "pwned"}},
		"hard link outside": {{name: "./h", typ: tar.TypeLink, link: "./../" + filepath.Base(outside) + "/secret"}},
		"link via symlink":  {{name: "./h", typ: tar.TypeLink, link: "./out/secret"}},
		"whiteout root":     {{name: ".", typ: tar.TypeChar}},
	}
	for name, entries := range bad {
		t.Run(name, func(t *testing.T) {
			root := newRoot(t)
			err := applyUpper(t.Context(), root, strings.NewReader(buildTar(t, entries)))
			if err == nil {
				t.Errorf("applied; want an error")
			}
			t.Log(err)
			if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "secret" {
				t.Fatalf("file outside the root changed: %q", b)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Fatalf("files appeared outside the root: %v", ents)
			}
		})
	}
}

// TestCopyTree checks that an image copy keeps every kind of file and its
// metadata.
func TestCopyTree(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "a/b/file"), "content", 0o644)
	mustWrite(t, filepath.Join(src, "suid"), "s", 0o755)
	for _, err := range []error{
		os.Chmod(filepath.Join(src, "suid"), 0o755|fs.ModeSetuid),
		os.Chmod(filepath.Join(src, "a"), 0o777|fs.ModeSticky),
		os.Link(filepath.Join(src, "a/b/file"), filepath.Join(src, "hard")),
		os.Symlink("/a/b/file", filepath.Join(src, "abs-link")),
		os.Symlink("missing", filepath.Join(src, "a/dangling")),
		unix.Mkfifo(filepath.Join(src, "fifo"), 0o600),
		unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))),
		os.Lchown(filepath.Join(src, "abs-link"), 5, 6),
		os.Chown(filepath.Join(src, "a/b"), 7, 8),
		unix.Setxattr(filepath.Join(src, "a/b/file"), "user.wrenn", []byte("x"), 0),
		os.Chtimes(filepath.Join(src, "a/b"), time.Unix(1e9, 0), time.Unix(1e9, 0)),
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
	want, got := describeTree(t, src), describeTree(t, dst)
	if !maps2Equal(got, want) {
		t.Errorf("copy differs:\n%s", diffTrees(want, got))
	}
	if !strings.Contains(got["/a/b/file"], "user.wrenn=x") || !strings.HasSuffix(got["/a/b"], " 1000000000") {
		t.Errorf("copy lost xattrs or directory times: %s, %s", got["/a/b/file"], got["/a/b"])
	}
}

func TestRotateLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, consoleLog)
	if err := rotateLog(log, 100); err != nil {
		t.Fatalf("rotate a missing log: %v", err)
	}
	mustWrite(t, log, "short\n", 0o600)
	if err := rotateLog(log, 100); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(log); string(b) != "short\n" {
		t.Fatalf("small log changed: %q", b)
	}
	var content strings.Builder
	for i := range 50 {
		fmt.Fprintf(&content, "line %02d\n", i) // 8 bytes a line
	}
	mustWrite(t, log, content.String(), 0o600)
	// A process appending to the log keeps appending after the rotation.
	w, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := rotateLog(log, 100); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(log + ".1")
	if want := content.String()[400-96:]; string(old) != want {
		t.Errorf("console.log.1 = %q, want the last whole lines within 100 bytes %q", old, want)
	}
	if _, err := w.WriteString("after\n"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(log); string(b) != "after\n" {
		t.Errorf("console.log after rotation = %q", b)
	}
}

// TestCreateRotatesConsoleLog checks that a start cuts down an oversized
// console log of an earlier run.
func TestCreateRotatesConsoleLog(t *testing.T) {
	f := newFixture(t)
	n := newNet(t)
	spec := f.spec(t, "cl-log", n)
	f.destroyAtEnd(t, spec.ID)
	if err := f.rt.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	e := newEnvdClient(n.InsideIP)
	e.waitHealthy(t)
	log := filepath.Join(f.rt.capsuleDir(spec.ID), consoleLog)
	big := strings.Repeat("earlier run\n", 2*maxConsoleLog/12)
	if err := os.WriteFile(log, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := runtime.Snapshot{Dir: t.TempDir()}
	e.prepareSnapshot(t)
	if err := f.rt.Pause(t.Context(), spec.ID, snap); err != nil {
		t.Fatal(err)
	}
	if err := f.rt.Restore(t.Context(), spec, snap); err != nil {
		t.Fatal(err)
	}
	e.waitHealthy(t)
	if st, err := os.Stat(log + ".1"); err != nil || st.Size() > maxConsoleLog || st.Size() < maxConsoleLog-12 {
		t.Errorf("console.log.1: %v, %v; want the last MiB of the earlier run", st, err)
	}
	if st, err := os.Stat(log); err != nil || st.Size() >= maxConsoleLog {
		t.Errorf("console.log: %v, %v; want it started anew", st, err)
	}
}

// tarEntry is one entry of a hand-made layer: typ is the tar type flag.
type tarEntry struct {
	name, link, body string
	typ              byte
	mode             int64
	uid, gid         int
	mtime            time.Time
	opaque           bool
	xattrs           map[string]string
}

// buildTar writes entries as a tar stream the way runsc does.
func buildTar(t *testing.T, entries []tarEntry) string {
	t.Helper()
	var b strings.Builder
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode,
			Uid: e.uid, Gid: e.gid, ModTime: e.mtime, Size: int64(len(e.body)),
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1e9, 0)
		}
		if e.opaque {
			h.PAXRecords = map[string]string{paxXattr + opaqueXattr: "y"}
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[paxXattr+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// describeTree describes every entry under root by its path from root:
// type, mode, owner, content hash, link target, device, xattrs, and for
// non-directories the modification time and the first path of its inode.
func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		var d string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			d = fmt.Sprintf("dir %o %d:%d %d", st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec)
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			d = "symlink -> " + target
			if st.Uid != 0 || st.Gid != 0 {
				d += fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
			}
		default:
			if _, ok := inodes[st.Ino]; !ok {
				inodes[st.Ino] = rel
			}
			kind := map[uint32]string{unix.S_IFREG: "file", unix.S_IFIFO: "fifo", unix.S_IFCHR: "chr"}[st.Mode&unix.S_IFMT]
			d = fmt.Sprintf("%s %o %d:%d %d link=%s", kind, st.Mode&0o7777, st.Uid, st.Gid, st.Mtim.Sec, inodes[st.Ino])
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				d += " sha=" + fileSum(t, p)
			case unix.S_IFCHR:
				d += fmt.Sprintf(" dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
			}
		}
		if names, _ := listXattrs(p); len(names) > 0 {
			slices.Sort(names)
			for _, n := range names {
				v, _ := getXattr(p, n)
				d += " " + n + "=" + string(v)
			}
		}
		out[rel] = d
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maps2Equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func diffTrees(want, got map[string]string) string {
	var lines []string
	for k, v := range want {
		if got[k] != v {
			lines = append(lines, fmt.Sprintf("%s: got %q, want %q", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, fmt.Sprintf("%s: got %q, want nothing", k, v))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func mustWrite(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func checkFile(t *testing.T, root, name, content string, mode, uid, gid uint32) {
	t.Helper()
	p := filepath.Join(root, name)
	b, err := os.ReadFile(p)
	if err != nil || string(b) != content {
		t.Errorf("%s = %q, %v; want %q", name, b, err, content)
	}
	st := lstat(t, root, name)
	if st.Mode&0o7777 != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", name, st.Mode&0o7777, st.Uid, st.Gid, mode, uid, gid)
	}
}

func lstat(t *testing.T, root, name string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, name), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// TestFlattenLargeFile flattens a capsule whose layer holds a file larger
// than its memory limit: runsc reads each file whole into the sandbox, so
// Flatten must make room for it.
func TestFlattenLargeFile(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	n := newNet(t)
	spec := f.spec(t, "cl-flat-big", n)
	spec.MemoryMB, spec.DiskMB = 128, 512
	f.destroyAtEnd(t, spec.ID)
	if err := f.rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	e := newEnvdClient(n.InsideIP)
	e.waitHealthy(t)
	sum := strings.TrimSpace(e.sh(t, "dd if=/dev/urandom of=/big bs=1M count=200 2>/dev/null && sync && sha256sum /big | cut -d' ' -f1"))
	dst := filepath.Join(t.TempDir(), "flat")
	start := time.Now()
	if _, err := f.rt.Flatten(ctx, spec.ID, dst); err != nil {
		t.Fatal(err)
	}
	t.Logf("flatten with a 200 MiB file: %v", time.Since(start))
	if got := fileSum(t, filepath.Join(dst, "big")); got != sum {
		t.Errorf("big: sha256 %s, capsule had %s", got, sum)
	}
	e.waitHealthy(t) // the capsule survived
}
