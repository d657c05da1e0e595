package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzExtract builds tars from a line-based description ("f name", "d name", "s name target",
// "h name target") and, whenever Check accepts one, extracts WriteTar's output with the real tar: nothing
// may appear outside the destination and every symlink that resolves must resolve inside it.
func FuzzExtract(f *testing.F) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		f.Skip("no tar")
	}
	for _, s := range []string{
		"d a\nf a/b\ns a/c b\nh a/d a/b",
		"s d /tmp\nf d/x",
		"d a/b\ns a/b/up ..\ns x a/b/up/../..",
		"d d\ns e d/a/..\ns d/a ..",
		"s a b\ns b a",
		"f ../x",
		"s l .\nf l/x",
		"d real\ns d real\nf d/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		var ms []member
		for _, line := range strings.Split(spec, "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 || len(ms) == 20 {
				continue
			}
			switch m := (member{name: fields[1], mode: 0o755}); fields[0] {
			case "f":
				ms = append(ms, member{name: m.name, typ: tar.TypeReg, body: "x", mode: 0o644})
			case "d":
				ms = append(ms, member{name: m.name, typ: tar.TypeDir, mode: 0o755})
			case "s", "h":
				if len(fields) < 3 {
					continue
				}
				typ := byte(tar.TypeSymlink)
				if fields[0] == "h" {
					typ = tar.TypeLink
				}
				ms = append(ms, member{name: m.name, typ: typ, link: fields[2], mode: 0o777})
			}
		}
		if len(ms) == 0 {
			return
		}
		var in bytes.Buffer
		tw := tar.NewWriter(&in)
		for _, m := range ms {
			size := int64(len(m.body))
			if m.typ != tar.TypeReg {
				size = 0
			}
			if tw.WriteHeader(&tar.Header{Typeflag: m.typ, Name: m.name, Linkname: m.link, Mode: m.mode, Size: size, Format: tar.FormatPAX}) != nil {
				return
			}
			tw.Write([]byte(m.body[:size]))
		}
		if tw.Close() != nil {
			return
		}
		b := in.Bytes()
		var out bytes.Buffer
		if err := WriteTar(&out, bytes.NewReader(b), int64(len(b))); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("WriteTar: %v", err)
			}
			return
		}
		parent := t.TempDir()
		dst := filepath.Join(parent, "dst")
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(tarBin, "-x", "--no-same-owner", "-C", dst)
		cmd.Stdin = &out
		cmd.CombinedOutput() // tar may refuse some accepted but odd archives (a dangling hard link chain); what it writes is what matters
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("extraction wrote outside the destination: %v", ents)
		}
		realDst, err := filepath.EvalSymlinks(dst)
		if err != nil {
			t.Fatal(err)
		}
		filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			resolved, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // dangling or a loop outside what the archive made
			}
			if rel, err := filepath.Rel(realDst, resolved); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				t.Fatalf("symlink %s resolves to %s, outside %s (spec %q)", p, resolved, realDst, spec)
			}
			return nil
		})
	})
}
