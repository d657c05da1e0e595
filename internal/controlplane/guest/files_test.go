package guest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// fileEntry is a FileEntry of the API.
type fileEntry struct {
	Name          string `json:"name"`
	Path          string `json:"path"`
	Type          string `json:"type"`
	Size          int64  `json:"size"`
	Mode          uint32 `json:"mode"`
	Permissions   string `json:"permissions"`
	Owner         string `json:"owner"`
	Group         string `json:"group"`
	ModifiedAt    int64  `json:"modified_at"`
	SymlinkTarget string `json:"symlink_target"`
}

func testFiles(t *testing.T, f *fixture) {
	dir := f.tempDir(t)
	content := []byte("hello files\x00\xff binary")

	// write (path first) creates parents; read returns the bytes.
	f.do(t, "POST", f.base()+"/files/write", f.key(), upload(t, dir+"/a/b/c.bin", content, false), 204)
	res := f.do(t, "POST", f.base()+"/files/read", f.key(), map[string]string{"path": dir + "/a/b/c.bin"}, 200)
	if !bytes.Equal(res.Body, content) || res.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("read back %q (%s)", res.Body, res.Header.Get("Content-Type"))
	}
	// write with the file part first, overwriting; sandbox_id prefix.
	f.do(t, "POST", "/v1/sandboxes/"+f.capsule+"/files/write", cptest.Bearer(f.alice.JWT), upload(t, dir+"/a/b/c.bin", []byte("second"), true), 204)
	if out := f.sh(t, "cat "+dir+"/a/b/c.bin"); out != "second" {
		t.Fatalf("overwritten file: %q", out)
	}
	// An empty file.
	f.do(t, "POST", f.base()+"/files/write", f.key(), upload(t, dir+"/empty", []byte{}, false), 204)
	if res := f.do(t, "POST", f.base()+"/files/read", f.key(), map[string]string{"path": dir + "/empty"}, 200); len(res.Body) != 0 {
		t.Fatalf("empty file read %q", res.Body)
	}
	// Relative paths and ~ resolve against the default user's home (root).
	f.do(t, "POST", f.base()+"/files/write", f.key(), upload(t, "~/rel-"+strings.TrimPrefix(dir, "/tmp/"), []byte("home"), false), 204)
	if out := f.sh(t, "cat /root/rel-"+strings.TrimPrefix(dir, "/tmp/")+" && rm /root/rel-"+strings.TrimPrefix(dir, "/tmp/")); out != "home" {
		t.Fatalf("~ path: %q", out)
	}

	// stream/read: chunked, whole content.
	res = f.do(t, "POST", f.base()+"/files/stream/read", f.key(), map[string]string{"path": dir + "/a/b/c.bin"}, 200)
	if string(res.Body) != "second" {
		t.Fatalf("stream read %q", res.Body)
	}

	// mkdir: 200 entry; again → 409 conflict; over a file → 400.
	var mk struct{ Entry fileEntry }
	f.do(t, "POST", f.base()+"/files/mkdir", f.key(), map[string]string{"path": dir + "/new/deep"}, 200).JSON(t, &mk)
	if mk.Entry.Name != "deep" || mk.Entry.Path != dir+"/new/deep" || mk.Entry.Type != "directory" || mk.Entry.Owner != "root" ||
		mk.Entry.Permissions == "" || mk.Entry.Mode == 0 || mk.Entry.ModifiedAt < time.Now().Add(-time.Hour).Unix() {
		t.Fatalf("mkdir entry %+v", mk.Entry)
	}
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/mkdir", f.key(), map[string]string{"path": dir + "/new/deep"}), 409, "conflict", "")
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/mkdir", f.key(), map[string]string{"path": dir + "/empty"}), 400, "invalid_request", "")

	// list: depth 1 (0 → 1) excludes the directory itself; depth 2 carries full paths; symlinks.
	f.sh(t, "ln -s a/b/c.bin "+dir+"/link")
	var ls struct{ Entries []fileEntry }
	for _, depth := range []any{nil, 0, 1} {
		body := map[string]any{"path": dir}
		if depth != nil {
			body["depth"] = depth
		}
		f.do(t, "POST", f.base()+"/files/list", f.key(), body, 200).JSON(t, &ls)
		names := map[string]fileEntry{}
		for _, e := range ls.Entries {
			names[e.Name] = e
		}
		if len(ls.Entries) != 4 || names["a"].Type != "directory" || names["empty"].Type != "file" || names["new"].Type != "directory" ||
			names["link"].Type != "symlink" || names["link"].SymlinkTarget == "" || names["empty"].Size != 0 || names["a"].Path != dir+"/a" {
			t.Fatalf("list depth %v: %+v", depth, ls.Entries)
		}
	}
	f.do(t, "POST", f.base()+"/files/list", f.key(), map[string]any{"path": dir + "/a", "depth": 2}, 200).JSON(t, &ls)
	if len(ls.Entries) != 2 || ls.Entries[0].Path != dir+"/a/b" && ls.Entries[1].Path != dir+"/a/b" {
		t.Fatalf("list depth 2: %+v", ls.Entries)
	}
	var found bool
	for _, e := range ls.Entries {
		found = found || (e.Path == dir+"/a/b/c.bin" && e.Size == 6 && e.Type == "file")
	}
	if !found {
		t.Fatalf("list depth 2 lacks the nested file: %+v", ls.Entries)
	}

	// remove: recursive, 204; absent → 204.
	f.do(t, "POST", f.base()+"/files/remove", f.key(), map[string]string{"path": dir + "/a"}, 204)
	f.do(t, "POST", f.base()+"/files/remove", f.key(), map[string]string{"path": dir + "/a"}, 204)
	if out := f.sh(t, "test -e "+dir+"/a && echo there || echo gone"); out != "gone\n" {
		t.Fatalf("after remove: %q", out)
	}
}

func testFileErrors(t *testing.T, f *fixture) {
	dir := f.tempDir(t)
	f.sh(t, "echo x > "+dir+"/file")

	// Missing path → 400 on every JSON route.
	for _, r := range []string{"read", "stream/read", "list", "mkdir", "remove"} {
		wantError(t, f.env.Do(t, "POST", f.base()+"/files/"+r, f.key(), map[string]string{}), 400, "invalid_request", "path is required")
		wantError(t, f.env.Do(t, "POST", f.base()+"/files/"+r, f.key(), []byte("{")), 400, "invalid_request", "invalid JSON body")
	}
	// Missing files and wrong types.
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/read", f.key(), map[string]string{"path": dir + "/nope"}), 404, "not_found", "")
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/stream/read", f.key(), map[string]string{"path": dir + "/nope"}), 404, "not_found", "")
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/read", f.key(), map[string]string{"path": dir}), 400, "invalid_request", "")
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/stream/read", f.key(), map[string]string{"path": dir}), 400, "invalid_request", "")
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/list", f.key(), map[string]string{"path": dir + "/nope"}), 404, "not_found", "")
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/list", f.key(), map[string]string{"path": dir + "/file"}), 400, "invalid_request", "")
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/list", f.key(), map[string]any{"path": dir, "depth": -1}), 400, "invalid_request", "depth must not be negative")

	// Multipart errors.
	for route, msg := range map[string]string{"write": "path is required", "stream/write": "path is required before the file part: send the path field first"} {
		wantError(t, f.env.Do(t, "POST", f.base()+"/files/"+route, f.key(), upload(t, "", []byte("x"), false)), 400, "invalid_request", msg)
		wantError(t, f.env.Do(t, "POST", f.base()+"/files/"+route, f.key(), upload(t, dir+"/x", nil, false)), 400, "invalid_request", "file part is required")
		wantError(t, f.env.Do(t, "POST", f.base()+"/files/"+route, f.key(), map[string]string{"path": dir + "/x"}), 400, "invalid_request", "")
	}
	wantError(t, f.env.Do(t, "POST", f.base()+"/files/stream/write", f.key(), upload(t, dir+"/x", []byte("x"), true)), 400, "invalid_request",
		"path is required before the file part: send the path field first")
	if out := f.sh(t, "ls "+dir); out != "file\n" {
		t.Fatalf("refused uploads changed the directory: %q", out)
	}

	// files/write over 100 MiB → 413: by Content-Length before reading, and counted on chunked
	// bodies both when streaming (path first) and when spooling (file first).
	post := func(body io.Reader, length int64) cptest.Response {
		t.Helper()
		req, err := http.NewRequest("POST", f.env.Server.URL+f.base()+"/files/write", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		req.Header.Set("Content-Type", multipartType)
		req.Header.Set("X-API-Key", f.alice.APIKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return cptest.Response{Status: res.StatusCode, Body: b}
	}
	big := &countingReader{r: &sizedBody{n: 101 << 20}}
	wantError(t, post(multipartStream(t, dir+"/big", big, false), 101<<20+512), 413, "too_large", "")
	if n := big.n.Load(); n > 50<<20 {
		t.Errorf("413 by Content-Length after the client sent %d bytes", n)
	}
	wantError(t, post(multipartStream(t, dir+"/big", &sizedBody{n: 100<<20 + 1}, false), 0), 413, "too_large", "")
	wantError(t, post(multipartStream(t, dir+"/big", &sizedBody{n: 100<<20 + 1}, true), 0), 413, "too_large", "")
	eventually(t, "refused large uploads leave nothing", func() error {
		if out := f.sh(t, "ls "+dir); out != "file\n" {
			return fmt.Errorf("directory has %q", out)
		}
		return nil
	})
}

// multipartType is the Content-Type of multipartStream bodies.
const multipartType = "multipart/form-data; boundary=wrenn-test-boundary"

// multipartStream is a multipart body generated while it is read: path field and a file part with
// content's bytes (path after the file when fileFirst), sent chunked.
func multipartStream(t *testing.T, path string, content io.Reader, fileFirst bool) io.Reader {
	t.Helper()
	pr, pw := io.Pipe()
	w := multipart.NewWriter(pw)
	if err := w.SetBoundary("wrenn-test-boundary"); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := func() error {
			if !fileFirst {
				if err := w.WriteField("path", path); err != nil {
					return err
				}
			}
			fw, err := w.CreateFormFile("file", "f")
			if err != nil {
				return err
			}
			if _, err := io.Copy(fw, content); err != nil {
				return err
			}
			if fileFirst {
				if err := w.WriteField("path", path); err != nil {
					return err
				}
			}
			return w.Close()
		}()
		pw.CloseWithError(err)
	}()
	return &typedReader{ReadCloser: pr}
}

// typedReader carries the multipart Content-Type for cptest; the HTTP client closes it when the
// request ends, which stops the writing goroutine.
type typedReader struct{ io.ReadCloser }

func (typedReader) ContentType() string { return multipartType }

// countingReader counts what was read from r, for a reader drained by another goroutine.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// sizedBody yields n pseudo-random bytes without holding them.
type sizedBody struct {
	n   int64
	rng *rand.ChaCha8
}

func (s *sizedBody) Read(p []byte) (int, error) {
	if s.n <= 0 {
		return 0, io.EOF
	}
	if s.rng == nil {
		s.rng = rand.NewChaCha8([32]byte{'w', 'r', 'e', 'n', 'n'})
	}
	if int64(len(p)) > s.n {
		p = p[:s.n]
	}
	n, _ := s.rng.Read(p)
	s.n -= int64(n)
	return n, nil
}

// heapPeak samples the heap until stop is called and returns the highest HeapAlloc seen.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

func testStreamedTransfer(t *testing.T, f *fixture) {
	const size = 64 << 20
	const bound = 24 << 20 // far below the file: nothing holds it whole
	dir := f.tempDir(t)
	path := dir + "/big.bin"

	// Expected hash.
	h := sha256.New()
	if _, err := io.Copy(h, &sizedBody{n: size}); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	stop := heapPeak()
	start := time.Now()
	req, err := http.NewRequest("POST", f.env.Server.URL+f.base()+"/files/stream/write", multipartStream(t, path, &sizedBody{n: size}, false))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", multipartType)
	req.Header.Set("X-API-Key", f.alice.APIKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	up := time.Since(start)
	peak := stop()
	if res.StatusCode != 204 {
		t.Fatalf("stream/write: %d %s", res.StatusCode, body)
	}
	if grown := int64(peak) - int64(base.HeapAlloc); grown > bound {
		t.Fatalf("heap grew by %d MiB during a %d MiB upload", grown>>20, size>>20)
	} else {
		t.Logf("upload %d MiB in %s, heap peak +%d MiB", size>>20, up.Round(time.Millisecond), grown>>20)
	}
	if out := f.sh(t, "sha256sum "+path+" | cut -d' ' -f1"); strings.TrimSpace(out) != want {
		t.Fatalf("hash in the capsule %q, want %s", out, want)
	}

	// Download: streamed, flushed in chunks, same hash, bounded heap.
	runtime.GC()
	runtime.ReadMemStats(&base)
	stop = heapPeak()
	start = time.Now()
	b, _ := json.Marshal(map[string]string{"path": path})
	req, _ = http.NewRequestWithContext(context.Background(), "POST", f.env.Server.URL+f.base()+"/files/stream/read", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", f.alice.APIKey)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.ContentLength != -1 || len(res.TransferEncoding) == 0 || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("stream/read: %d length %d encoding %v", res.StatusCode, res.ContentLength, res.TransferEncoding)
	}
	h = sha256.New()
	n, err := io.Copy(h, res.Body)
	res.Body.Close()
	down := time.Since(start)
	peak = stop()
	if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatalf("download: %d bytes, err %v, hash match %v", n, err, hex.EncodeToString(h.Sum(nil)) == want)
	}
	if grown := int64(peak) - int64(base.HeapAlloc); grown > bound {
		t.Fatalf("heap grew by %d MiB during a %d MiB download", grown>>20, size>>20)
	} else {
		t.Logf("download %d MiB in %s, heap peak +%d MiB", size>>20, down.Round(time.Millisecond), grown>>20)
	}

	// files/read and files/write handle the same file too (below the 100 MiB cap).
	res2 := f.do(t, "POST", f.base()+"/files/read", f.key(), map[string]string{"path": path}, 200)
	if sum := sha256.Sum256(res2.Body); hex.EncodeToString(sum[:]) != want {
		t.Fatal("files/read of the big file: hash mismatch")
	}
	f.do(t, "POST", f.base()+"/files/write", f.key(), multipartStream(t, dir+"/big2.bin", &sizedBody{n: size}, true), 204)
	if out := f.sh(t, "sha256sum "+dir+"/big2.bin | cut -d' ' -f1"); strings.TrimSpace(out) != want {
		t.Fatalf("files/write (file part first) hash %q, want %s", out, want)
	}
}

// testWriteOwnershipFirst: files/write to another team's capsule is answered 404 before the server
// reads the body: the answer arrives while the client is still sending, long before the declared
// 90 MiB are through, and nothing is written.
func testWriteOwnershipFirst(t *testing.T, f *fixture) {
	for _, sub := range []string{"/files/write", "/files/stream/write"} {
		const size = 90 << 20
		c, err := net.Dial("tcp", strings.TrimPrefix(f.env.Server.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		head := "POST " + f.base() + sub + " HTTP/1.1\r\nHost: cp\r\nAuthorization: Bearer " + f.bob.JWT +
			"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n"
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		var sent atomic.Int64
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for sent.Load() < size {
				n, err := c.Write(chunk)
				sent.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		atAnswer := sent.Load()
		_ = c.Close()
		<-wrote
		if err != nil {
			t.Fatalf("%s to another team's capsule: %v", sub, err)
		}
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 404 || !strings.Contains(string(body), "sandbox not found") {
			t.Errorf("%s to another team's capsule: %d %s", sub, res.StatusCode, body)
		}
		if atAnswer >= size/2 {
			t.Errorf("%s: the answer came after %d of %d bytes were sent", sub, atAnswer, size)
		}
	}
}
