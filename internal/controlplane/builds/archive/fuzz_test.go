package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
)

func seeds(f *testing.F) {
	plain := makeTar(f, dir("./"), file("a/b", "hello"), symlink("a/c", "b"), hardlink("a/d", "a/b"))
	for _, b := range [][]byte{
		plain, gz(f, plain), makeZip(f, dir("z/"), file("z/f", "x"), symlink("z/l", "f")),
		makeTar(f, file("../x", "x")), makeTar(f, symlink("d", "/etc"), file("d/x", "x")),
		makeZip(f, file("../../x", "x")), gz(f, makeTar(f, symlink("a", "b"), symlink("b", "a"))),
	} {
		f.Add(b)
	}
}

// fuzzLimits keeps each input cheap: a sparse entry can legally expand to the whole limit.
func fuzzLimits(f *testing.F) {
	oldE, oldX := maxEntries, maxExpanded
	maxEntries, maxExpanded = 1000, 1<<20
	f.Cleanup(func() { maxEntries, maxExpanded = oldE, oldX })
}

func FuzzCheck(f *testing.F) {
	fuzzLimits(f)
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		format, err := check(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if format != Tar && format != TarGz && format != Zip {
			t.Fatalf("format %q", format)
		}
	})
}

func FuzzWriteTar(f *testing.F) {
	fuzzLimits(f)
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, checkErr := check(b)
		var out bytes.Buffer
		err := WriteTar(&out, bytes.NewReader(b), int64(len(b)))
		if (checkErr == nil) != (err == nil) {
			t.Fatalf("Check: %v, WriteTar: %v", checkErr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		tr := tar.NewReader(&out)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("output does not read back: %v", err)
			}
			name := strings.TrimSuffix(hdr.Name, "/")
			if name == "" || path.IsAbs(name) || path.Clean(name) != name || name == "." || hasDotDot(name) {
				t.Fatalf("output name %q is not clean and relative", hdr.Name)
			}
			switch hdr.Typeflag {
			case tar.TypeReg, tar.TypeDir, tar.TypeSymlink:
			case tar.TypeLink:
				if path.IsAbs(hdr.Linkname) || hasDotDot(hdr.Linkname) {
					t.Fatalf("hard link %q -> %q", hdr.Name, hdr.Linkname)
				}
			default:
				t.Fatalf("output type %q", hdr.Typeflag)
			}
			if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" || hdr.Mode&^0o777 != 0 || len(hdr.PAXRecords) > 0 && hasXattr(hdr.PAXRecords) {
				t.Fatalf("header not normalised: %+v", hdr)
			}
			if hdr.Typeflag == tar.TypeSymlink && (path.IsAbs(hdr.Linkname) || hdr.Linkname == "") {
				t.Fatalf("symlink %q -> %q", hdr.Name, hdr.Linkname)
			}
		}
	})
}

func hasDotDot(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return true
		}
	}
	return false
}

func hasXattr(recs map[string]string) bool {
	for k := range recs {
		if strings.HasPrefix(k, "SCHILY.xattr.") || strings.HasPrefix(k, "LIBARCHIVE.xattr.") {
			return true
		}
	}
	return false
}
