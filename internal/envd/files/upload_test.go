package files

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	envdfs "github.com/wrenn/wrenn/internal/envd/fs"
)

type part struct {
	name, filename, content string
}

// multipartBody encodes parts with raw filename parameters, as the SDK
// sends them (full paths included).
func multipartBody(t *testing.T, parts ...part) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		disp := fmt.Sprintf(`form-data; name=%q`, p.name)
		if p.filename != "" {
			disp += fmt.Sprintf(`; filename=%q`, p.filename)
		}
		h.Set("Content-Disposition", disp)
		h.Set("Content-Type", "application/octet-stream")
		w, err := mw.CreatePart(h)
		must(t, err)
		_, _ = io.WriteString(w, p.content)
	}
	must(t, mw.Close())
	return mw.FormDataContentType(), buf.Bytes()
}

func (e *env) post(t *testing.T, ctype string, body io.Reader, header http.Header, query ...string) (int, []writtenFile, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.filesURL(query...), body)
	req.Header.Set("Content-Type", ctype)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	res, b := e.do(t, req)
	var out []writtenFile
	if res.StatusCode == 200 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("response %s: %v", b, err)
		}
	}
	return res.StatusCode, out, string(b)
}

func TestUploadMultipart(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "new", "deep", "a.txt"), filepath.Join(dir, "b.txt")
	ctype, body := multipartBody(t,
		part{"file", a, "AAA"},
		part{"other", "", "ignored field"},
		part{"file", b, "BB"},
	)
	status, out, raw := e.post(t, ctype, bytes.NewReader(body), nil, "username", "alice")
	if status != 200 {
		t.Fatalf("status %d: %s", status, raw)
	}
	want := []writtenFile{{Path: a, Name: "a.txt", Type: "file"}, {Path: b, Name: "b.txt", Type: "file"}}
	if fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("response %+v, want %+v", out, want)
	}
	for path, content := range map[string]string{a: "AAA", b: "BB"} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("%s holds %q, %v", path, got, err)
		}
		if uid, gid, perm := owner(t, path); uid != aliceUID || gid != aliceGID || perm != 0o644 {
			t.Errorf("%s: %d:%d %o, want alice 644", path, uid, gid, perm)
		}
	}
	for _, d := range []string{filepath.Join(dir, "new"), filepath.Join(dir, "new", "deep")} {
		if uid, _, perm := owner(t, d); uid != aliceUID || perm != 0o755 {
			t.Errorf("parent %s: uid %d mode %o", d, uid, perm)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("leftover temporary files: %v", ents)
	}

	t.Run("relative filename", func(t *testing.T) {
		ctype, body := multipartBody(t, part{"file", "up/rel.txt", "r"})
		t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(aliceHome, "up")) })
		status, out, raw := e.post(t, ctype, bytes.NewReader(body), nil, "username", "alice")
		if status != 200 || len(out) != 1 || out[0].Path != filepath.Join(aliceHome, "up", "rel.txt") {
			t.Fatalf("%d %s", status, raw)
		}
	})
	t.Run("path query wins", func(t *testing.T) {
		dest := filepath.Join(dir, "q.txt")
		ctype, body := multipartBody(t, part{"file", "ignored.txt", "Q"})
		status, out, raw := e.post(t, ctype, bytes.NewReader(body), nil, "path", dest)
		if status != 200 || len(out) != 1 || out[0].Path != dest {
			t.Fatalf("%d %s", status, raw)
		}
	})
	tests := []struct {
		name  string
		parts []part
		query []string
	}{
		{"duplicate destination", []part{{"file", a, "1"}, {"file", a, "2"}}, nil},
		{"path query with two files", []part{{"file", "x", "1"}, {"file", "y", "2"}}, []string{"path", filepath.Join(dir, "same")}},
		{"no file part", []part{{"other", "", "x"}}, nil},
		{"no filename", []part{{"file", "", "x"}}, nil},
		{"directory at destination", []part{{"file", dir, "x"}}, nil},
		{"file as parent", []part{{"file", filepath.Join(b, "child"), "x"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype, body := multipartBody(t, tt.parts...)
			if status, _, raw := e.post(t, ctype, bytes.NewReader(body), nil, tt.query...); status != 400 {
				t.Fatalf("status %d (%s), want 400", status, raw)
			}
		})
	}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	must(t, zw.Close())
	return buf.Bytes()
}

func TestUploadOctetStream(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	ctype, mp := multipartBody(t, part{"file", filepath.Join(dir, "gzmp.txt"), "multi"})
	tests := []struct {
		name    string
		ctype   string
		body    []byte
		header  http.Header
		query   []string
		status  int
		path    string
		content string
	}{
		{"plain", "application/octet-stream", []byte("raw bytes"), nil, []string{"path", filepath.Join(dir, "o.bin")}, 200, filepath.Join(dir, "o.bin"), "raw bytes"},
		{"gzip", "application/octet-stream", gzipped(t, []byte("zipped")), http.Header{"Content-Encoding": {"gzip"}}, []string{"path", filepath.Join(dir, "z.bin")}, 200, filepath.Join(dir, "z.bin"), "zipped"},
		{"gzip multipart", ctype, gzipped(t, mp), http.Header{"Content-Encoding": {"gzip"}}, nil, 200, filepath.Join(dir, "gzmp.txt"), "multi"},
		{"missing path", "application/octet-stream", []byte("x"), nil, nil, 400, "", ""},
		{"brotli", "application/octet-stream", []byte("x"), http.Header{"Content-Encoding": {"br"}}, []string{"path", filepath.Join(dir, "br")}, 400, "", ""},
		{"corrupt gzip", "application/octet-stream", []byte("not gzip at all"), http.Header{"Content-Encoding": {"gzip"}}, []string{"path", filepath.Join(dir, "bad")}, 400, "", ""},
		{"truncated gzip", "application/octet-stream", gzipped(t, bytes.Repeat([]byte("abc"), 1000))[:30], http.Header{"Content-Encoding": {"gzip"}}, []string{"path", filepath.Join(dir, "trunc")}, 400, "", ""},
		{"text/plain", "text/plain", []byte("x"), nil, []string{"path", filepath.Join(dir, "t")}, 400, "", ""},
		{"directory", "application/octet-stream", []byte("x"), nil, []string{"path", dir}, 400, "", ""},
		{"unknown user", "application/octet-stream", []byte("x"), nil, []string{"path", filepath.Join(dir, "u"), "username", "mallory"}, 401, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out, raw := e.post(t, tt.ctype, bytes.NewReader(tt.body), tt.header, tt.query...)
			if status != tt.status {
				t.Fatalf("status %d (%s), want %d", status, raw, tt.status)
			}
			if status != 200 {
				return
			}
			if len(out) != 1 || out[0].Path != tt.path || out[0].Type != "file" {
				t.Fatalf("response %s", raw)
			}
			if got, _ := os.ReadFile(tt.path); string(got) != tt.content {
				t.Fatalf("file holds %q", got)
			}
		})
	}
	for _, name := range []string{"bad", "trunc"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("failed upload left %s behind: %v", name, err)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".*")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestUploadReadOnly(t *testing.T) {
	e := newEnv(t)
	ro := mountTmpfs(t, "ro,size=1m")
	status, _, raw := e.post(t, "application/octet-stream", strings.NewReader("x"), nil, "path", filepath.Join(ro, "f"))
	if status != http.StatusForbidden {
		t.Fatalf("status %d (%s), want 403", status, raw)
	}
}

func TestUploadReplaceAndSymlink(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.txt")
	must(t, os.WriteFile(existing, []byte("old and longer"), 0o600))
	target := filepath.Join(dir, "target.txt")
	must(t, os.WriteFile(target, []byte("target old"), 0o644))
	link := filepath.Join(dir, "link")
	must(t, os.Symlink("target.txt", link))

	for path, content := range map[string]string{existing: "new", link: "via link"} {
		if status, out, raw := e.post(t, "application/octet-stream", strings.NewReader(content), nil, "path", path, "username", "alice"); status != 200 || out[0].Path != path {
			t.Fatalf("upload to %s: %d %s", path, status, raw)
		}
	}
	if got, _ := os.ReadFile(existing); string(got) != "new" {
		t.Fatalf("replaced file holds %q", got)
	}
	if uid, _, perm := owner(t, existing); uid != aliceUID || perm != 0o600 {
		t.Fatalf("replaced file: uid %d mode %o (mode must be kept, owner set)", uid, perm)
	}
	if info, err := os.Lstat(link); err != nil || info.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v %v", info, err)
	}
	if got, _ := os.ReadFile(target); string(got) != "via link" {
		t.Fatalf("symlink target holds %q", got)
	}
}

func TestUploadMetadata(t *testing.T) {
	e := newEnv(t)
	dest := filepath.Join(t.TempDir(), "m.txt")
	h := http.Header{}
	h.Add("X-Metadata-Owner", "team-a")
	h.Add("x-metadata-K", "first")
	h.Add("X-Metadata-k", "second")
	h.Add("X-Metadata-", "empty key")
	h.Add("X-Other", "not metadata")
	status, out, raw := e.post(t, "application/octet-stream", strings.NewReader("m"), h, "path", dest)
	if status != 200 {
		t.Fatalf("%d %s", status, raw)
	}
	want := map[string]string{"owner": "team-a", "k": "first"}
	if !maps.Equal(out[0].Metadata, want) {
		t.Fatalf("response metadata %v, want %v", out[0].Metadata, want)
	}
	entry, err := envdfs.Entry(dest)
	must(t, err)
	if !maps.Equal(entry.GetMetadata(), want) {
		t.Fatalf("entry metadata %v, want %v", entry.GetMetadata(), want)
	}

	// A second upload keeps the keys it does not mention.
	ctype, body := multipartBody(t, part{"file", dest, "m2"})
	status, out, raw = e.post(t, ctype, bytes.NewReader(body), http.Header{"X-Metadata-K": {"changed"}, "X-Metadata-New": {"n"}})
	if status != 200 {
		t.Fatalf("%d %s", status, raw)
	}
	want = map[string]string{"owner": "team-a", "k": "changed", "new": "n"}
	entry, err = envdfs.Entry(dest)
	must(t, err)
	if !maps.Equal(entry.GetMetadata(), want) || !maps.Equal(out[0].Metadata, want) {
		t.Fatalf("metadata after second upload: entry %v, response %v; want %v", entry.GetMetadata(), out[0].Metadata, want)
	}

	// An upload without metadata overwrites the file with none, through a symlink too.
	link := filepath.Join(filepath.Dir(dest), "link")
	must(t, os.Symlink(dest, link))
	for _, path := range []string{dest, link} {
		status, _, raw = e.post(t, "application/octet-stream", strings.NewReader("m"), http.Header{"X-Metadata-K": {"v"}}, "path", path)
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		if md, err := envdfs.ReadMetadata(dest); err != nil || len(md) == 0 {
			t.Fatalf("%s: metadata before overwrite %v %v", path, md, err)
		}
		status, out, raw = e.post(t, "application/octet-stream", strings.NewReader("plain"), nil, "path", path)
		if status != 200 {
			t.Fatalf("%d %s", status, raw)
		}
		entry, err = envdfs.Entry(dest)
		must(t, err)
		if out[0].Metadata != nil || entry.GetMetadata() != nil {
			t.Fatalf("%s: metadata after an upload without any: response %v, entry %v", path, out[0].Metadata, entry.GetMetadata())
		}
		if got, _ := os.ReadFile(dest); string(got) != "plain" {
			t.Fatalf("%s: content %q", path, got)
		}
	}
}

func TestUploadDiskFull(t *testing.T) {
	e := newEnv(t)
	dir := mountTmpfs(t, "size=1m")
	keep := filepath.Join(dir, "keep.txt")
	must(t, os.WriteFile(keep, []byte("precious"), 0o644))
	big := bytes.Repeat([]byte("x"), 2<<20)
	for _, mode := range []string{"octet-stream", "multipart"} {
		t.Run(mode, func(t *testing.T) {
			for _, dest := range []string{filepath.Join(dir, "big.bin"), keep} {
				var status int
				var raw string
				if mode == "octet-stream" {
					status, _, raw = e.post(t, "application/octet-stream", bytes.NewReader(big), nil, "path", dest)
				} else {
					ctype, body := multipartBody(t, part{"file", dest, string(big)})
					status, _, raw = e.post(t, ctype, bytes.NewReader(body), nil)
				}
				if status != http.StatusInsufficientStorage || !strings.Contains(raw, `"code":507`) {
					t.Fatalf("upload to %s: status %d (%s), want 507", dest, status, raw)
				}
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 || ents[0].Name() != "keep.txt" {
				t.Fatalf("directory after failed uploads: %v", ents)
			}
			if got, _ := os.ReadFile(keep); string(got) != "precious" {
				t.Fatalf("existing file damaged by a failed upload: %q", got)
			}
		})
	}
}
