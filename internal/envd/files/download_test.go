package files

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/envd/auth"
)

func TestDownload(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "hello.txt")
	must(t, os.WriteFile(file, []byte("hello world"), 0o644))
	must(t, os.WriteFile(filepath.Join(aliceHome, "mine.bin"), []byte{1, 2, 3}, 0o644))
	t.Cleanup(func() { _ = os.Remove(filepath.Join(aliceHome, "mine.bin")) })
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))

	tests := []struct {
		name   string
		query  []string
		status int
		body   string
		ctype  string
		disp   string
	}{
		{"file", []string{"path", file}, 200, "hello world", "text/plain; charset=utf-8", `inline; filename="hello.txt"`},
		{"relative to user home", []string{"path", "mine.bin", "username", "alice"}, 200, "\x01\x02\x03", "application/octet-stream", `inline; filename="mine.bin"`},
		{"tilde", []string{"path", "~/mine.bin", "username", "alice"}, 200, "\x01\x02\x03", "application/octet-stream", `inline; filename="mine.bin"`},
		{"missing", []string{"path", filepath.Join(dir, "nope")}, 404, "", "", ""},
		{"directory", []string{"path", dir}, 400, "", "", ""},
		{"fifo", []string{"path", filepath.Join(dir, "fifo")}, 400, "", "", ""},
		{"no path is the home directory", nil, 400, "", "", ""},
		{"other home", []string{"path", "~bob/x"}, 400, "", "", ""},
		{"unknown user", []string{"path", file, "username", "mallory"}, 401, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.filesURL(tt.query...), nil)
			res, body := e.do(t, req)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", res.StatusCode, body, tt.status)
			}
			if tt.status != 200 {
				var eb struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				}
				if err := json.Unmarshal(body, &eb); err != nil || eb.Code != tt.status || eb.Message == "" {
					t.Fatalf("error body %s", body)
				}
				return
			}
			if string(body) != tt.body {
				t.Fatalf("body %q, want %q", body, tt.body)
			}
			for k, want := range map[string]string{"Content-Type": tt.ctype, "Content-Disposition": tt.disp, "Vary": "Accept-Encoding", "Content-Length": strconv.Itoa(len(tt.body))} {
				if got := res.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestDownloadEncoding(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(t.TempDir(), "data.json")
	content := bytes.Repeat([]byte(`{"k":"value"}`), 4000)
	must(t, os.WriteFile(file, content, 0o644))

	tests := []struct {
		accept string
		status int
		gzip   bool
	}{
		{"", 200, false},
		{"gzip", 200, true},
		{"gzip, deflate", 200, true},
		{"deflate, gzip;q=0.5", 200, true},
		{"*", 200, true},
		{"br", 200, false},
		{"gzip;q=0", 200, false},
		{"gzip;q=0, identity", 200, false},
		{"identity;q=0", 406, false},
		{"br, identity;q=0", 406, false},
		{"*;q=0", 406, false},
		{"gzip, identity;q=0", 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.accept, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.filesURL("path", file), nil)
			if tt.accept != "" {
				req.Header.Set("Accept-Encoding", tt.accept)
			}
			res, body := e.do(t, req)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", res.StatusCode, body, tt.status)
			}
			if tt.status != 200 {
				return
			}
			if got := res.Header.Get("Content-Encoding") == "gzip"; got != tt.gzip {
				t.Fatalf("gzip = %v, want %v", got, tt.gzip)
			}
			if tt.gzip {
				if len(body) >= len(content) {
					t.Fatalf("gzip body of %d bytes for %d bytes of JSON", len(body), len(content))
				}
				zr, err := gzip.NewReader(bytes.NewReader(body))
				must(t, err)
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(body, content) {
				t.Fatal("content differs")
			}
		})
	}
}

func TestDownloadRangeAndRevalidation(t *testing.T) {
	e := newEnv(t)
	file := filepath.Join(t.TempDir(), "r.txt")
	must(t, os.WriteFile(file, []byte("0123456789"), 0o644))
	mtime := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, os.Chtimes(file, mtime, mtime))

	req, _ := http.NewRequest(http.MethodGet, e.filesURL("path", file), nil)
	res, _ := e.do(t, req)
	etag := res.Header.Get("Etag")
	if etag == "" || res.Header.Get("Last-Modified") != mtime.Format(http.TimeFormat) {
		t.Fatalf("validators: Etag %q Last-Modified %q", etag, res.Header.Get("Last-Modified"))
	}
	tests := []struct {
		name   string
		header map[string]string
		status int
		body   string
	}{
		{"range", map[string]string{"Range": "bytes=2-5"}, 206, "2345"},
		{"suffix range", map[string]string{"Range": "bytes=-3"}, 206, "789"},
		{"unsatisfiable range", map[string]string{"Range": "bytes=50-"}, 416, ""},
		{"if-none-match", map[string]string{"If-None-Match": etag}, 304, ""},
		{"if-none-match stale", map[string]string{"If-None-Match": `"other"`}, 200, "0123456789"},
		{"if-modified-since", map[string]string{"If-Modified-Since": mtime.Add(time.Hour).Format(http.TimeFormat)}, 304, ""},
		{"modified since", map[string]string{"If-Modified-Since": mtime.Add(-time.Hour).Format(http.TimeFormat)}, 200, "0123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, e.filesURL("path", file), nil)
			req.Header.Set("Accept-Encoding", "gzip") // must be ignored: identity is forced
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			res, body := e.do(t, req)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if res.Header.Get("Content-Encoding") != "" {
				t.Fatalf("Content-Encoding %q on a conditional request", res.Header.Get("Content-Encoding"))
			}
			if tt.status != 416 && string(body) != tt.body {
				t.Fatalf("body %q, want %q", body, tt.body)
			}
		})
	}
}

func TestContentDisposition(t *testing.T) {
	tests := map[string]string{
		"a.txt":      `inline; filename="a.txt"`,
		`q"uo\te`:    `inline; filename="q\"uo\\te"`,
		"naïve.txt":  `inline; filename*=utf-8''na%C3%AFve.txt`,
		"with space": `inline; filename="with space"`,
	}
	for in, want := range tests {
		if got := contentDisposition(in); got != want {
			t.Errorf("contentDisposition(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSignatures(t *testing.T) {
	e := newEnv(t)
	const token = "s3cret"
	e.setToken(t, token)
	dir := t.TempDir()
	file := filepath.Join(dir, "s.txt")
	must(t, os.WriteFile(file, []byte("signed"), 0o644))
	now := time.Now().Unix()
	future, past := now+3600, now-10
	sig := func(path, op, user string, exp int64) string { return auth.Signature(path, op, user, token, exp) }

	tests := []struct {
		name   string
		method string
		query  []string
		header string
		status int
	}{
		{"no credentials", "GET", []string{"path", file}, "", 401},
		{"header", "GET", []string{"path", file}, token, 200},
		{"wrong header", "GET", []string{"path", file}, "nope", 401},
		{"wrong header with valid signature", "GET", []string{"path", file, "signature", sig(file, "read", "", 0)}, "nope", 401},
		{"signature", "GET", []string{"path", file, "signature", sig(file, "read", "", 0)}, "", 200},
		{"signature with user", "GET", []string{"path", file, "username", "alice", "signature", sig(file, "read", "alice", 0)}, "", 200},
		{"signature for another user", "GET", []string{"path", file, "username", "alice", "signature", sig(file, "read", "root", 0)}, "", 401},
		{"signature with expiration", "GET", []string{"path", file, "signature", sig(file, "read", "", future), "signature_expiration", strconv.FormatInt(future, 10)}, "", 200},
		{"expired signature", "GET", []string{"path", file, "signature", sig(file, "read", "", past), "signature_expiration", strconv.FormatInt(past, 10)}, "", 401},
		{"expiration altered", "GET", []string{"path", file, "signature", sig(file, "read", "", future), "signature_expiration", strconv.FormatInt(future+1, 10)}, "", 401},
		{"path altered", "GET", []string{"path", file + "x", "signature", sig(file, "read", "", 0)}, "", 401},
		{"write signature used to read", "GET", []string{"path", file, "signature", sig(file, "write", "", 0)}, "", 401},
		{"upload signature", "POST", []string{"path", filepath.Join(dir, "up.txt"), "signature", sig(filepath.Join(dir, "up.txt"), "write", "", 0)}, "", 200},
		{"read signature used to write", "POST", []string{"path", filepath.Join(dir, "up.txt"), "signature", sig(filepath.Join(dir, "up.txt"), "read", "", 0)}, "", 401},
		{"upload without credentials", "POST", []string{"path", filepath.Join(dir, "up.txt")}, "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.method == "POST" {
				body = bytes.NewReader([]byte("up"))
			}
			req, _ := http.NewRequest(tt.method, e.filesURL(tt.query...), body)
			if tt.method == "POST" {
				req.Header.Set("Content-Type", "application/octet-stream")
			}
			if tt.header != "" {
				req.Header.Set(auth.Header, tt.header)
			}
			res, b := e.do(t, req)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", res.StatusCode, b, tt.status)
			}
			if tt.status == 401 && !bytes.Contains(b, []byte(`"code":401`)) {
				t.Fatalf("401 body %s", b)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	req, _ := http.NewRequest(http.MethodDelete, e.filesURL("path", "/x"), nil)
	res, _ := e.do(t, req)
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// TestDownloadPseudoFile: files that report size 0 but hold content (/proc, /sys) come back whole, even
// when a range is asked for (their size is unknown, so no range can be honoured).
func TestDownloadPseudoFile(t *testing.T) {
	e := newEnv(t)
	for _, hdr := range []map[string]string{nil, {"Range": "bytes=0-3"}, {"Accept-Encoding": "identity"}} {
		req, _ := http.NewRequest(http.MethodGet, e.filesURL("path", "/proc/self/mounts"), nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, body := e.do(t, req)
		if res.StatusCode != 200 {
			t.Fatalf("%v: status %d (%s)", hdr, res.StatusCode, body)
		}
		if !strings.Contains(string(body), " / ") {
			t.Fatalf("%v: body %q is not a mount table", hdr, body)
		}
	}
}
