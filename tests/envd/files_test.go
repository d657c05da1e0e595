package envd_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/testutil"
)

type httpResult struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// writeInfo is one element of the upload response (docs/envd.md).
type writeInfo struct {
	Path     string            `json:"path"`
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata"`
}

func filesURL(e *env, path, username string) string {
	q := url.Values{}
	if path != "" {
		q.Set("path", path)
	}
	if username != "" {
		q.Set("username", username)
	}
	return e.URL + "/files?" + q.Encode()
}

func do(t *testing.T, e *env, req *http.Request) httpResult {
	t.Helper()
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return httpResult{resp.StatusCode, resp.Header, b}
}

// upload posts body as application/octet-stream to path.
func upload(t *testing.T, e *env, path, username string, body io.Reader, hdr ...string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 60*time.Second), http.MethodPost, filesURL(e, path, username), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, e, req)
}

// part is one multipart file part; filename is sent raw, as the SDK does.
type part struct {
	field, filename string
	data            io.Reader
}

// uploadMultipart streams parts as multipart/form-data.
func uploadMultipart(t *testing.T, e *env, path, username string, parts []part, hdr ...string) httpResult {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for _, p := range parts {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.field, p.filename))
			h.Set("Content-Type", "application/octet-stream")
			w, err := mw.CreatePart(h)
			if err == nil {
				_, err = io.Copy(w, p.data)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, err := http.NewRequestWithContext(ctxT(t, 60*time.Second), http.MethodPost, filesURL(e, path, username), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, e, req)
}

func download(t *testing.T, e *env, path, username string, hdr ...string) httpResult {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t, 60*time.Second), http.MethodGet, filesURL(e, path, username), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return do(t, e, req)
}

func decodeWriteInfo(t *testing.T, r httpResult) []writeInfo {
	t.Helper()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("upload: %d %s", r.StatusCode, r.Body)
	}
	var infos []writeInfo
	if err := json.Unmarshal(r.Body, &infos); err != nil {
		t.Fatalf("upload response %q: %v", r.Body, err)
	}
	return infos
}

// httpErrorCode checks the {"code":<status>,"message":…} body of docs/envd.md.
func httpErrorCode(t *testing.T, r httpResult, want int) {
	t.Helper()
	if r.StatusCode != want {
		t.Fatalf("status %d (%s), want %d", r.StatusCode, r.Body, want)
	}
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || body.Code != want || body.Message == "" {
		t.Errorf("error body %q, want {\"code\":%d,\"message\":…}", r.Body, want)
	}
}

func TestFilesUploadDownload(t *testing.T) {
	e := startEnvd(t)
	root := t.TempDir()
	u := testutil.CreateUser(t, testutil.RandomName("wrnt", 8))

	t.Run("multipart, several files, full paths in filename", func(t *testing.T) {
		a, b := filepath.Join(root, "m", "n", "a.txt"), filepath.Join(root, "m", "o", "b.bin")
		infos := decodeWriteInfo(t, uploadMultipart(t, e, "", u.Name, []part{
			{"file", a, strings.NewReader("alpha")},
			{"ignored", filepath.Join(root, "ignored"), strings.NewReader("x")},
			{"file", b, bytes.NewReader([]byte{0, 1, 2, 255})},
		}))
		want := []writeInfo{{Path: a, Name: "a.txt", Type: "file"}, {Path: b, Name: "b.bin", Type: "file"}}
		if len(infos) != 2 || infos[0].Path != want[0].Path || infos[0].Name != want[0].Name || infos[0].Type != "file" ||
			infos[1].Path != want[1].Path || infos[1].Name != want[1].Name {
			t.Fatalf("write info %+v, want %+v", infos, want)
		}
		for p, content := range map[string]string{a: "alpha", b: "\x00\x01\x02\xff"} {
			got, err := os.ReadFile(p)
			if err != nil || string(got) != content {
				t.Errorf("%s = %q, %v", p, got, err)
			}
			assertOwner(t, p, u.UID)
		}
		assertOwner(t, filepath.Join(root, "m"), u.UID)
		if _, err := os.Stat(filepath.Join(root, "ignored")); !os.IsNotExist(err) {
			t.Error("a part not named file was written")
		}
	})
	t.Run("multipart with path query", func(t *testing.T) {
		dst := filepath.Join(root, "q.txt")
		infos := decodeWriteInfo(t, uploadMultipart(t, e, dst, "", []part{{"file", "other-name.txt", strings.NewReader("q")}}))
		if len(infos) != 1 || infos[0].Path != dst {
			t.Fatalf("write info %+v, want %s", infos, dst)
		}
	})
	t.Run("relative path resolves under the user's home", func(t *testing.T) {
		infos := decodeWriteInfo(t, upload(t, e, "docs/rel.txt", u.Name, strings.NewReader("rel")))
		want := filepath.Join(u.Home, "docs", "rel.txt")
		if len(infos) != 1 || infos[0].Path != want {
			t.Fatalf("write info %+v, want %s", infos, want)
		}
		if r := download(t, e, "~/docs/rel.txt", u.Name); r.StatusCode != 200 || string(r.Body) != "rel" {
			t.Fatalf("download ~/docs/rel.txt: %d %q", r.StatusCode, r.Body)
		}
	})
	t.Run("gzip body and metadata", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write([]byte("compressed content"))
		_ = zw.Close()
		dst := filepath.Join(root, "gz.txt")
		infos := decodeWriteInfo(t, upload(t, e, dst, "", &buf, "Content-Encoding", "gzip", "X-Metadata-K", "v", "X-Metadata-Other", "w"))
		if len(infos) != 1 || infos[0].Metadata["k"] != "v" || infos[0].Metadata["other"] != "w" {
			t.Fatalf("write info %+v, want metadata k=v other=w", infos)
		}
		if got, _ := os.ReadFile(dst); string(got) != "compressed content" {
			t.Fatalf("content %q", got)
		}
		en, err := stat(t, e, dst)
		if err != nil || en.GetMetadata()["k"] != "v" {
			t.Fatalf("Stat metadata %v, %v", en.GetMetadata(), err)
		}
		// Keys not mentioned keep their values.
		decodeWriteInfo(t, upload(t, e, dst, "", strings.NewReader("again"), "X-Metadata-K", "v2"))
		if en, _ := stat(t, e, dst); en.GetMetadata()["k"] != "v2" || en.GetMetadata()["other"] != "w" {
			t.Errorf("metadata after second upload %v", en.GetMetadata())
		}
	})
	t.Run("download", func(t *testing.T) {
		p := filepath.Join(root, "d.txt")
		writeFile(t, p, "hello world")
		r := download(t, e, p, "")
		if r.StatusCode != 200 || string(r.Body) != "hello world" {
			t.Fatalf("download: %d %q", r.StatusCode, r.Body)
		}
		if cd := r.Header.Get("Content-Disposition"); cd != `inline; filename="d.txt"` {
			t.Errorf("Content-Disposition %q", cd)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q", ct)
		}
		if !strings.Contains(r.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("Vary %q", r.Header.Get("Vary"))
		}

		gz := download(t, e, p, "", "Accept-Encoding", "gzip")
		if gz.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Accept-Encoding gzip: Content-Encoding %q", gz.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz.Body))
		if err != nil {
			t.Fatal(err)
		}
		if plain, _ := io.ReadAll(zr); string(plain) != "hello world" {
			t.Errorf("gzip body decodes to %q", plain)
		}

		rg := download(t, e, p, "", "Range", "bytes=1-3")
		if rg.StatusCode != http.StatusPartialContent || string(rg.Body) != "ell" {
			t.Errorf("Range: %d %q", rg.StatusCode, rg.Body)
		}
		if ne := download(t, e, p, "", "Accept-Encoding", "identity;q=0, *;q=0"); ne.StatusCode != http.StatusNotAcceptable {
			t.Errorf("no acceptable encoding: %d, want 406", ne.StatusCode)
		}
		if bin := download(t, e, filepath.Join(root, "m", "o", "b.bin"), ""); bin.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("unknown extension Content-Type %q", bin.Header.Get("Content-Type"))
		}
	})
	t.Run("errors", func(t *testing.T) {
		writeFile(t, filepath.Join(root, "dup"), "")
		tests := []struct {
			name string
			do   func() httpResult
			want int
		}{
			{"download missing", func() httpResult { return download(t, e, filepath.Join(root, "missing"), "") }, 404},
			{"download directory", func() httpResult { return download(t, e, root, "") }, 400},
			{"download device", func() httpResult { return download(t, e, "/dev/null", "") }, 400},
			{"download unknown user", func() httpResult { return download(t, e, "x", "no-such-user-wrn") }, 401},
			{"upload unknown user", func() httpResult {
				return upload(t, e, "x", "no-such-user-wrn", strings.NewReader("x"))
			}, 401},
			{"octet-stream without path", func() httpResult { return upload(t, e, "", "", strings.NewReader("x")) }, 400},
			{"upload onto a directory", func() httpResult { return upload(t, e, root, "", strings.NewReader("x")) }, 400},
			{"duplicate destination", func() httpResult {
				d := filepath.Join(root, "twice.txt")
				return uploadMultipart(t, e, "", "", []part{{"file", d, strings.NewReader("1")}, {"file", d, strings.NewReader("2")}})
			}, 400},
			{"unsupported content encoding", func() httpResult {
				return upload(t, e, filepath.Join(root, "br"), "", strings.NewReader("x"), "Content-Encoding", "br")
			}, 400},
			{"unsupported content type", func() httpResult {
				return upload(t, e, filepath.Join(root, "ct"), "", strings.NewReader("x"), "Content-Type", "text/plain")
			}, 400},
			{"corrupt gzip", func() httpResult {
				return upload(t, e, filepath.Join(root, "cg"), "", strings.NewReader("not gzip"), "Content-Encoding", "gzip")
			}, 400},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) { httpErrorCode(t, tt.do(), tt.want) })
		}
	})
	e.requireHealthy(t)
}

func assertOwner(t *testing.T, path string, uid int) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Error(err)
		return
	}
	if int(st.Uid) != uid {
		t.Errorf("%s owned by uid %d, want %d", path, st.Uid, uid)
	}
}

// genReader yields n deterministic pseudo-random bytes without holding them.
type genReader struct {
	rng *rand.ChaCha8
	n   int64
}

func newGen(seed byte, n int64) *genReader {
	var s [32]byte
	s[0] = seed
	return &genReader{rng: rand.NewChaCha8(s), n: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.n {
		p = p[:g.n]
	}
	_, _ = g.rng.Read(p)
	g.n -= int64(len(p))
	return len(p), nil
}

// TestFilesLargeBoundedMemory streams 256 MiB in both upload modes and
// back, and checks envd's peak RSS does not follow the file size.
func TestFilesLargeBoundedMemory(t *testing.T) {
	e := startEnvd(t)
	const size = 256 << 20
	const budget = 64 << 20
	dir := t.TempDir()
	before, err := testutil.ProcPeakRSS(e.PID)
	if err != nil {
		t.Fatal(err)
	}
	sum := func(seed byte) [32]byte {
		h := sha256.New()
		_, _ = io.Copy(h, newGen(seed, size))
		return [32]byte(h.Sum(nil))
	}

	octet := filepath.Join(dir, "octet.bin")
	// An unknown length forces a chunked body, like the SDK's streams.
	decodeWriteInfo(t, upload(t, e, octet, "", io.NopCloser(newGen(1, size))))
	multi := filepath.Join(dir, "multi.bin")
	decodeWriteInfo(t, uploadMultipart(t, e, "", "", []part{{"file", multi, newGen(2, size)}}))

	for _, c := range []struct {
		path string
		seed byte
	}{{octet, 1}, {multi, 2}} {
		fi, err := os.Stat(c.path)
		if err != nil || fi.Size() != size {
			t.Fatalf("%s: %v size %d", c.path, err, fi.Size())
		}
		want := sum(c.seed)
		req, _ := http.NewRequestWithContext(ctxT(t, 60*time.Second), http.MethodGet, filesURL(e, c.path, ""), nil)
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		_ = resp.Body.Close()
		if err != nil || n != size || [32]byte(h.Sum(nil)) != want {
			t.Fatalf("download %s: %d bytes, err %v, hash match %v", c.path, n, err, [32]byte(h.Sum(nil)) == want)
		}
	}
	after, err := testutil.ProcPeakRSS(e.PID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("envd VmHWM %d MiB -> %d MiB over 768 MiB of transfers", before>>20, after>>20)
	if after-before > budget {
		t.Fatalf("envd peak RSS grew by %d MiB, want < %d MiB", (after-before)>>20, budget>>20)
	}
}
