package envd_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// TestBadInput sends malformed requests: each gets a clear error, and envd
// stays healthy and is never restarted.
func TestBadInput(t *testing.T) {
	e := startEnvd(t)
	baseFDs := e.fds(t)
	startJSON := []byte(`{"process":{"cmd":"/bin/true"}}`)
	dir := t.TempDir()

	t.Run("stream envelopes", func(t *testing.T) {
		truncated := envelope(0, startJSON)[:12]
		longer := envelope(0, startJSON)
		binary.BigEndian.PutUint32(longer[1:], 1000)
		tests := []struct {
			name string
			body []byte
			hdr  []string
		}{
			{"empty body", nil, nil},
			{"short header", []byte{0, 0, 0}, nil},
			{"truncated payload", truncated, nil},
			{"length beyond body", longer, nil},
			{"compressed flag without encoding", envelope(1, startJSON), nil},
			{"end-stream flag", envelope(2, startJSON), nil},
			{"unknown flags", envelope(0x80, startJSON), nil},
			{"garbage JSON", envelope(0, []byte("{{{not json")), nil},
			{"garbage bytes", []byte("\xff\xfe\xfd garbage that is no envelope at all"), nil},
			{"two messages", append(envelope(0, startJSON), envelope(0, startJSON)...), nil},
			{"wrong field type", envelope(0, []byte(`{"process":{"cmd":5}}`)), nil},
			{"bad gzip", envelope(1, []byte("not gzip")), []string{"Connect-Content-Encoding", "gzip"}},
			{"unknown encoding", envelope(1, startJSON), []string{"Connect-Content-Encoding", "zstd-nope"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, frames := rawStream(t, e, "/process.Process/Start", tt.body, tt.hdr...)
				switch {
				case status == http.StatusOK:
					code := streamError(t, frames)
					if code == "" {
						t.Fatalf("accepted: %d envelopes, clean end", len(frames))
					}
					if len(frames) > 1 {
						t.Errorf("a process was started (%d envelopes) before %s", len(frames), code)
					}
				case status >= 400 && status < 500:
				default:
					t.Fatalf("status %d", status)
				}
				e.requireHealthy(t)
			})
		}
	})
	t.Run("gzip stream request", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write([]byte(`{"process":{"cmd":"/bin/echo","args":["zipped"]}}`))
		_ = zw.Close()
		status, frames := rawStream(t, e, "/process.Process/Start", envelope(1, buf.Bytes()), "Connect-Content-Encoding", "gzip")
		if status != 200 || streamError(t, frames) != "" || !bytes.Contains(bytes.Join(payloads(frames), nil), []byte(`"start"`)) {
			t.Fatalf("gzip Start: %d %q", status, payloads(frames))
		}
	})

	t.Run("unary bodies", func(t *testing.T) {
		tests := []struct {
			name   string
			path   string
			ctype  string
			body   []byte
			status int
			code   string
		}{
			{"malformed JSON", "/filesystem.Filesystem/Stat", "application/json", []byte(`{"path":`), 400, "invalid_argument"},
			{"wrong JSON type", "/filesystem.Filesystem/Stat", "application/json", []byte(`{"path":42}`), 400, "invalid_argument"},
			{"garbage proto", "/filesystem.Filesystem/Stat", "application/proto", []byte("\xff\xff\xff\xff"), 400, "invalid_argument"},
			{"wrong content type", "/filesystem.Filesystem/Stat", "text/plain", []byte(`{"path":"/"}`), 415, ""},
			{"stream content type on unary", "/filesystem.Filesystem/Stat", "application/connect+json", envelope(0, []byte(`{"path":"/"}`)), 415, ""},
			{"unknown RPC", "/filesystem.Filesystem/Nope", "application/json", []byte(`{}`), 404, ""},
			{"unknown tag", "/process.Process/SendSignal", "application/json", []byte(`{"process":{"tag":"nope"},"signal":"SIGNAL_SIGKILL"}`), 404, "not_found"},
			{"unknown pid", "/process.Process/SendInput", "application/json", []byte(`{"process":{"pid":999999},"input":{"stdin":"aGkK"}}`), 404, "not_found"},
			{"empty selector", "/process.Process/SendSignal", "application/json", []byte(`{"process":{},"signal":"SIGNAL_SIGKILL"}`), 400, "invalid_argument"},
			{"unknown enum name", "/process.Process/SendSignal", "application/json", []byte(`{"process":{"pid":1},"signal":"SIGNAL_NOPE"}`), 400, "invalid_argument"},
			{"missing path", "/filesystem.Filesystem/Stat", "application/json", []byte(`{"path":"` + filepath.Join(dir, "nope") + `"}`), 404, "not_found"},
			{"unknown user", "/filesystem.Filesystem/Stat", "application/json", []byte(`{"path":"x"}`), 401, "unauthenticated"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var hdr []string
				if tt.name == "unknown user" {
					hdr = []string{"Authorization", basicUser("no-such-user-wrn")}
				}
				status, code, body := rawUnary(t, e, tt.path, tt.ctype, tt.body, hdr...)
				if status != tt.status || code != tt.code {
					t.Fatalf("status %d code %q (%s), want %d %q", status, code, body, tt.status, tt.code)
				}
				e.requireHealthy(t)
			})
		}
		// Unknown fields are ignored; snake_case input is accepted.
		status, _, body := rawUnary(t, e, "/filesystem.Filesystem/ListDir", "application/json", []byte(fmt.Sprintf(`{"path":%q,"depth":"1","futureField":1}`, dir)))
		if status != 200 {
			t.Errorf("ListDir with an unknown field and a string depth: %d %s", status, body)
		}
		status, _, body = rawUnary(t, e, "/filesystem.Filesystem/WatchDir", "application/json", []byte(`{}`))
		if status != 415 && status != 404 && status != 405 {
			t.Errorf("unary request to a stream RPC: %d %s", status, body)
		}
	})
	t.Run("stream errors", func(t *testing.T) {
		tests := []struct {
			name string
			path string
			body string
			hdr  []string
			code string
		}{
			{"Connect unknown pid", "/process.Process/Connect", `{"process":{"pid":999999}}`, nil, "not_found"},
			{"Connect unknown tag", "/process.Process/Connect", `{"process":{"tag":"nope"}}`, nil, "not_found"},
			{"Connect empty selector", "/process.Process/Connect", `{"process":{}}`, nil, "invalid_argument"},
			{"Start missing cwd", "/process.Process/Start", fmt.Sprintf(`{"process":{"cmd":"/bin/true","cwd":%q}}`, filepath.Join(dir, "nope")), nil, "invalid_argument"},
			{"Start unknown user", "/process.Process/Start", `{"process":{"cmd":"/bin/true"}}`, []string{"Authorization", basicUser("no-such-user-wrn")}, "unauthenticated"},
			{"Start malformed basic auth", "/process.Process/Start", `{"process":{"cmd":"/bin/true"}}`, []string{"Authorization", "Basic %%%"}, "unauthenticated"},
			{"WatchDir missing", "/filesystem.Filesystem/WatchDir", fmt.Sprintf(`{"path":%q}`, filepath.Join(dir, "nope")), nil, "not_found"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, frames := rawStream(t, e, tt.path, envelope(0, []byte(tt.body)), tt.hdr...)
				if status != 200 {
					t.Fatalf("status %d, want 200 with the error in the end-of-stream envelope", status)
				}
				if code := streamError(t, frames); code != tt.code {
					t.Fatalf("end-of-stream code %q, want %q", code, tt.code)
				}
				if len(frames) != 1 {
					t.Errorf("%d envelopes before the error, want none", len(frames)-1)
				}
			})
		}
		req, _ := http.NewRequestWithContext(ctxT(t, 30*time.Second), http.MethodPost, e.URL+"/process.Process/Connect", bytes.NewReader(envelope(0, []byte(`{"process":{"pid":1}}`))))
		req.Header.Set("Content-Type", "application/connect+xml")
		if r := do(t, e, req); r.StatusCode != 415 {
			t.Errorf("stream with an unsupported codec: %d", r.StatusCode)
		}
	})
	t.Run("files and init", func(t *testing.T) {
		r := request(t, e, http.MethodPost, "/init", []byte("\x00\x01garbage"))
		httpErrorCode(t, r, 400)
		req, _ := http.NewRequestWithContext(ctxT(t, 30*time.Second), http.MethodPost, filesURL(e, filepath.Join(dir, "f"), ""), bytes.NewReader([]byte("--x\r\nbroken multipart")))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		if r := do(t, e, req); r.StatusCode != 400 {
			t.Errorf("broken multipart: %d %q", r.StatusCode, r.Body)
		}
		req, _ = http.NewRequestWithContext(ctxT(t, 30*time.Second), http.MethodPost, filesURL(e, "", ""), bytes.NewReader([]byte("--x\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--x--\r\n")))
		req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		if r := do(t, e, req); r.StatusCode != 400 {
			t.Errorf("multipart part without filename or path: %d %q", r.StatusCode, r.Body)
		}
		if r := download(t, e, "~other/x", ""); r.StatusCode != 400 {
			t.Errorf("~other path: %d", r.StatusCode)
		}
	})
	e.requireHealthy(t)
	e.requireNoFDLeak(t, baseFDs)
}

func payloads(frames []frame) [][]byte {
	out := make([][]byte, len(frames))
	for i, f := range frames {
		out[i] = f.payload
	}
	return out
}
