package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// member describes one entry of a test archive.
type member struct {
	name, link string
	typ        byte // tar type; for zip: TypeReg, TypeDir, TypeSymlink, or TypeFifo/TypeChar for special modes
	body       string
	mode       int64
}

func file(name, body string) member {
	return member{name: name, typ: tar.TypeReg, body: body, mode: 0o644}
}
func dir(name string) member { return member{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) member {
	return member{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) member {
	return member{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}

func makeTar(t testing.TB, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		size := int64(len(m.body))
		if m.typ != tar.TypeReg {
			size = 0
		}
		hdr := &tar.Header{Typeflag: m.typ, Name: m.name, Linkname: m.link, Mode: m.mode, Size: size,
			ModTime: time.Unix(1700000000, 0), Uid: 1000, Gid: 1000, Uname: "dev", Gname: "dev", Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, m.body); err != nil && size > 0 {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func makeZip(t testing.TB, ms ...member) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, m := range ms {
		h := &zip.FileHeader{Name: m.name, Method: zip.Deflate, Modified: time.Unix(1700000000, 0)}
		mode := fs.FileMode(m.mode)
		switch m.typ {
		case tar.TypeDir:
			mode |= fs.ModeDir
		case tar.TypeSymlink:
			mode |= fs.ModeSymlink
			m.body = m.link
		case tar.TypeFifo:
			mode |= fs.ModeNamedPipe
		case tar.TypeChar:
			mode |= fs.ModeDevice | fs.ModeCharDevice
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, m.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func check(b []byte) (Format, error) { return Check(bytes.NewReader(b), int64(len(b))) }

// wantInvalid checks err is an ErrInvalid naming entry (when not "") and saying reason.
func wantInvalid(t *testing.T, err error, entry, reason string) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	var ve *Error
	if !errors.As(err, &ve) || ve.Entry != entry || !strings.Contains(err.Error(), reason) {
		t.Fatalf("err = %v, want entry %q and %q", err, entry, reason)
	}
	if entry != "" && !strings.Contains(err.Error(), fmt.Sprintf("entry %q", entry)) {
		t.Fatalf("message %q does not name the entry", err)
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want Format
	}{
		{"tar", makeTar(t, file("a", "x")), Tar},
		{"tgz", gz(t, makeTar(t, file("a", "x"))), TarGz},
		{"zip", makeZip(t, file("a", "x")), Zip},
	}
	for _, tt := range tests {
		got, err := Detect(bytes.NewReader(tt.b), int64(len(tt.b)))
		if err != nil || got != tt.want {
			t.Errorf("%s: Detect = %q, %v", tt.name, got, err)
		}
	}
	for _, b := range [][]byte{nil, []byte("hello"), []byte(strings.Repeat("x", 600)), []byte("PK\x05\x06" + strings.Repeat("\x00", 18)), []byte{0x1f}} {
		_, err := Detect(bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, ErrInvalid) || err.Error() != "unsupported archive format" {
			t.Errorf("Detect(%q) = %v, want unsupported archive format", b, err)
		}
		if _, err := Check(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Check(%q) = %v", b, err)
		}
	}
}

func TestCheckMalicious(t *testing.T) {
	tests := []struct {
		name   string
		ms     []member
		entry  string
		reason string
	}{
		{"dotdot", []member{file("../x", "evil")}, "../x", "path escapes the archive root"},
		{"inner dotdot", []member{file("a/../../x", "evil")}, "a/../../x", "path escapes the archive root"},
		{"harmless-looking dotdot", []member{file("a/../b", "x")}, "a/../b", "path escapes the archive root"},
		{"backslash dotdot", []member{file(`a\..\..\x`, "x")}, `a\..\..\x`, "path escapes the archive root"},
		{"absolute", []member{file("/etc/cron.d/x", "evil")}, "/etc/cron.d/x", "absolute path"},
		{"symlink absolute", []member{symlink("etc", "/etc")}, "etc", `symlink target "/etc" resolves outside the archive root`},
		{"symlink up", []member{dir("a/"), symlink("a/up", "../..")}, "a/up", `symlink target "../.." resolves outside`},
		{"symlink then write-through", []member{symlink("d", "/tmp"), file("d/evil", "x")}, "d", "resolves outside"},
		{"write-through an inside symlink", []member{dir("real/"), symlink("d", "real"), file("d/x", "x")}, "d/x", `path passes through the symlink "d"`},
		{"symlink chain", []member{dir("a/b/"), symlink("a/b/up", ".."), symlink("x", "a/b/up/../..")}, "x", "resolves outside"},
		{"later symlink redirects an earlier one", []member{dir("d/"), symlink("e", "d/a/.."), symlink("d/a", "..")}, "e", "resolves outside"},
		{"symlink through nonexistent", []member{symlink("x", "nope/../../etc")}, "x", "resolves outside"},
		{"symlink loop", []member{symlink("a", "b"), symlink("b", "a")}, "b", "too many levels"},
		{"symlink replaces dir", []member{file("d/f", "x"), symlink("d", "elsewhere")}, "d", "replaces an earlier directory with a symlink"},
		{"file replaces symlink", []member{symlink("f", "g"), file("f", "x")}, "f", "replaces an earlier symlink with a file"},
		{"hardlink to /etc/shadow", []member{hardlink("shadow", "/etc/shadow")}, "shadow", `hard link target "/etc/shadow" resolves outside the archive root`},
		{"hardlink up", []member{hardlink("h", "../../etc/shadow")}, "h", "resolves outside the archive root"},
		{"hardlink to nothing", []member{hardlink("h", "missing")}, "h", "is not an earlier file in the archive"},
		{"hardlink to dir", []member{dir("d/"), hardlink("h", "d")}, "h", "is not an earlier file"},
		{"hardlink through symlink", []member{dir("d/"), file("d/f", "x"), symlink("s", "d"), hardlink("h", "s/f")}, "h", "is not an earlier file"},
		{"device", []member{{name: "dev/null", typ: tar.TypeChar, mode: 0o666}}, "dev/null", "unsupported entry type character device"},
		{"block device", []member{{name: "sda", typ: tar.TypeBlock, mode: 0o666}}, "sda", "unsupported entry type block device"},
		{"fifo", []member{{name: "p", typ: tar.TypeFifo, mode: 0o644}}, "p", "unsupported entry type fifo"},
		{"root as a file", []member{file(".", "")}, ".", "only a directory may name the archive root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := makeTar(t, tt.ms...)
			for _, b := range [][]byte{plain, gz(t, plain)} {
				_, err := check(b)
				wantInvalid(t, err, tt.entry, tt.reason)
				var out bytes.Buffer
				err = WriteTar(&out, bytes.NewReader(b), int64(len(b)))
				wantInvalid(t, err, tt.entry, tt.reason)
				if out.Len() != 0 {
					t.Fatalf("WriteTar wrote %d bytes before failing", out.Len())
				}
			}
		})
	}
}

func TestCheckZipMalicious(t *testing.T) {
	tests := []struct {
		name   string
		ms     []member
		entry  string
		reason string
	}{
		{"zip slip", []member{file("../../evil.sh", "x")}, "../../evil.sh", "path escapes the archive root"},
		{"zip slip backslash", []member{file(`..\evil.sh`, "x")}, `..\evil.sh`, "path escapes the archive root"},
		{"absolute", []member{file("/root/.ssh/authorized_keys", "x")}, "/root/.ssh/authorized_keys", "absolute path"},
		{"symlink out", []member{symlink("link", "../../etc")}, "link", "resolves outside"},
		{"symlink then write-through", []member{symlink("link", "/etc"), file("link/passwd", "x")}, "link", "resolves outside"},
		{"fifo", []member{{name: "p", typ: tar.TypeFifo, mode: 0o644}}, "p", "unsupported entry type fifo"},
		{"device", []member{{name: "c", typ: tar.TypeChar, mode: 0o644}}, "c", "unsupported entry type character device"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := makeZip(t, tt.ms...)
			_, err := check(b)
			wantInvalid(t, err, tt.entry, tt.reason)
			err = WriteTar(io.Discard, bytes.NewReader(b), int64(len(b)))
			wantInvalid(t, err, tt.entry, tt.reason)
		})
	}
}

func lowerLimits(t *testing.T, entries int, expanded int64) {
	oldE, oldX := maxEntries, maxExpanded
	maxEntries, maxExpanded = entries, expanded
	t.Cleanup(func() { maxEntries, maxExpanded = oldE, oldX })
}

func TestTooManyEntries(t *testing.T) {
	lowerLimits(t, 3, MaxExpanded)
	ms := []member{dir("a/"), file("a/1", "x"), file("a/2", "x")}
	if _, err := check(makeTar(t, ms...)); err != nil {
		t.Fatalf("3 entries: %v", err)
	}
	ms = append(ms, file("a/3", "x"))
	for _, b := range [][]byte{makeTar(t, ms...), gz(t, makeTar(t, ms...)), makeZip(t, ms...)} {
		_, err := check(b)
		wantInvalid(t, err, "", "more than 3 entries")
	}
}

func TestDecompressionBomb(t *testing.T) {
	lowerLimits(t, MaxEntries, 1<<20)
	zeros := strings.Repeat("\x00", 1<<20+1)
	// Honest headers, too much content: caught from the header before reading.
	tgz := gz(t, makeTar(t, file("bomb", zeros)))
	if len(tgz) > 10<<10 {
		t.Fatalf("the gzip bomb is %d bytes, not a bomb", len(tgz))
	}
	_, err := check(tgz)
	wantInvalid(t, err, "bomb", "expanded size exceeds 1048576 bytes")
	_, err = check(makeZip(t, file("bomb", zeros)))
	wantInvalid(t, err, "bomb", "expanded size exceeds")

	// Many files that each fit but together do not.
	half := strings.Repeat("\x00", 600<<10)
	_, err = check(gz(t, makeTar(t, file("a", half), file("b", half))))
	wantInvalid(t, err, "b", "expanded size exceeds")

	// A zip whose central directory lies about the size: the bytes actually inflated count.
	_, err = check(lyingZip(t, zeros, 100))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `entry "bomb"`) {
		t.Fatalf("lying zip: %v", err)
	}
	// Lying in the other direction (claims less than the limit allows, inflates to more) on a huge scale.
	_, err = check(lyingZip(t, strings.Repeat("\x00", 8<<20), 1<<19))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `entry "bomb"`) {
		t.Fatalf("lying zip: %v", err)
	}
}

// lyingZip stores body deflated under a header that claims size bytes.
func lyingZip(t *testing.T, body string, size uint64) []byte {
	t.Helper()
	var comp bytes.Buffer
	fw, err := flate.NewWriter(&comp, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(fw, body)
	fw.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bomb", Method: zip.Deflate, CompressedSize64: uint64(comp.Len()), UncompressedSize64: size}
	h.SetMode(0o644)
	w, err := zw.CreateRaw(h)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(comp.Bytes())
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTooLarge(t *testing.T) {
	b := makeTar(t, file("a", "x"))
	if _, err := Check(bytes.NewReader(b), MaxUpload+1); !errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestCorrupt(t *testing.T) {
	b := makeTar(t, file("a", strings.Repeat("x", 2000)))
	for name, c := range map[string][]byte{
		"truncated tar": b[:1024],
		"truncated tgz": gz(t, b)[:30],
		"truncated zip": makeZip(t, file("a", "hello"))[:40],
	} {
		if _, err := check(c); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

// readTar lists a tar stream as "name type mode uid:gid uname/gname link body".
func readTar(t *testing.T, b []byte) []string {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if len(hdr.PAXRecords) != 0 {
			t.Errorf("%s: PAX records %v", hdr.Name, hdr.PAXRecords)
		}
		out = append(out, strings.Join([]string{hdr.Name, string(hdr.Typeflag), fmt.Sprintf("%04o", hdr.Mode),
			strconv.Itoa(hdr.Uid) + ":" + strconv.Itoa(hdr.Gid), hdr.Uname + "/" + hdr.Gname, hdr.Linkname, string(body)}, " "))
	}
	return out
}

func TestWriteTarRoundTrip(t *testing.T) {
	ms := []member{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./app/", typ: tar.TypeDir, mode: 0o4755 | 0o1000},
		{name: "./app/run.sh", typ: tar.TypeReg, body: "#!/bin/sh\necho hi\n", mode: 0o6755},
		file("app//conf.yaml", "a: 1\n"),
		symlink("app/current", "run.sh"),
		symlink("app/up", "../app/./conf.yaml"),
		hardlink("app/run2.sh", "./app/run.sh"),
		file("empty", ""),
	}
	want := []string{
		"app/ 5 0755 0:0 /  ",
		"app/run.sh 0 0755 0:0 /  #!/bin/sh\necho hi\n",
		"app/conf.yaml 0 0644 0:0 /  a: 1\n",
		"app/current 2 0777 0:0 / run.sh ",
		"app/up 2 0777 0:0 / ../app/./conf.yaml ",
		"app/run2.sh 1 0644 0:0 / app/run.sh ",
		"empty 0 0644 0:0 /  ",
	}
	plain := makeTar(t, ms...)
	for name, b := range map[string][]byte{"tar": plain, "tgz": gz(t, plain)} {
		var out bytes.Buffer
		if err := WriteTar(&out, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := readTar(t, out.Bytes()); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: got\n%q\nwant\n%q", name, got, want)
		}
	}
}

func TestWriteTarZip(t *testing.T) {
	b := makeZip(t, dir("site/"), member{name: "site/index.html", typ: tar.TypeReg, body: "<h1>hi</h1>", mode: 0o4644},
		symlink("site/home.html", "index.html"), file("top.txt", "top"))
	var out bytes.Buffer
	if err := WriteTar(&out, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	got := readTar(t, out.Bytes())
	sort.Strings(got)
	want := []string{
		"site/ 5 0755 0:0 /  ",
		"site/home.html 2 0777 0:0 / index.html ",
		"site/index.html 0 0644 0:0 /  <h1>hi</h1>",
		"top.txt 0 0644 0:0 /  top",
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestWriteTarGitArchiveGlobalHeader(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "abc"}})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	var out bytes.Buffer
	if err := WriteTar(&out, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	if got := readTar(t, out.Bytes()); len(got) != 1 || !strings.HasPrefix(got[0], "f 0 ") {
		t.Fatalf("got %q", got)
	}
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

var errSink = errors.New("sink broke")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		return 0, errSink
	}
	w.n -= len(p)
	return len(p), nil
}

func TestWriteTarWriterError(t *testing.T) {
	b := makeTar(t, file("a", strings.Repeat("x", 5000)))
	err := WriteTar(&failWriter{n: 600}, bytes.NewReader(b), int64(len(b)))
	if !errors.Is(err, errSink) || errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want the writer's error and not ErrInvalid", err)
	}
}

// TestWriteTarExtracts feeds WriteTar's output to tar -x, as the builder does in the build capsule.
func TestWriteTarExtracts(t *testing.T) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar")
	}
	b := gz(t, makeTar(t, dir("./"), file("./app/run.sh", "echo hi"), symlink("app/cur", "run.sh"),
		hardlink("app/again", "app/run.sh"), dir("app/data/")))
	var out bytes.Buffer
	if err := WriteTar(&out, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	cmd := exec.Command(tarBin, "-x", "--no-same-owner", "-C", dst)
	cmd.Stdin = &out
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v: %s", err, msg)
	}
	for _, p := range []string{"app/run.sh", "app/cur", "app/again"} {
		got, err := os.ReadFile(filepath.Join(dst, p))
		if err != nil || string(got) != "echo hi" {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dst, "app/data")); err != nil || !fi.IsDir() {
		t.Errorf("app/data: %v", err)
	}
}
