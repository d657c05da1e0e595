package security_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// capsule is the part of the capsule object the suite looks at.
type capsule struct {
	ID                 string `json:"id"`
	Status             string `json:"status"`
	Secure             bool   `json:"secure"`
	EnvdAccessToken    string `json:"envd_access_token"`
	TrafficAccessToken string `json:"traffic_access_token"`
}

// suite is the platform every check shares.
type suite struct {
	p     *platform.Platform
	owner cptest.Cred // the admin team's API key (the admin owns the team)
}

// create creates a capsule with body as cred and destroys it when t ends.
func (s *suite) create(t *testing.T, cred cptest.Cred, body map[string]any) capsule {
	t.Helper()
	res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules", cred, body)
	if res.Status != 201 {
		t.Fatalf("create capsule %v: %d %s", body, res.Status, res.Body)
	}
	var c capsule
	res.JSON(t, &c)
	t.Cleanup(func() { s.destroy(t, cred, c.ID) })
	if c.Status != "running" {
		t.Fatalf("created capsule is %s", c.Status)
	}
	return c
}

// destroy destroys capsule id (a capsule already destroyed is fine).
func (s *suite) destroy(t *testing.T, cred cptest.Cred, id string) {
	t.Helper()
	if res := cptest.Call(t, s.p.URL(), "DELETE", "/v1/capsules/"+id, cred, nil); res.Status != 204 {
		t.Errorf("destroy %s: %d %s", id, res.Status, res.Body)
	}
}

// db connects to the platform's database (closed when t ends).
func (s *suite) db(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.p.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// get reads capsule id as the owner.
func (s *suite) get(t *testing.T, id string) capsule {
	t.Helper()
	res := cptest.Call(t, s.p.URL(), "GET", "/v1/capsules/"+id, s.owner, nil)
	if res.Status != 200 {
		t.Fatalf("get %s: %d %s", id, res.Status, res.Body)
	}
	var c capsule
	res.JSON(t, &c)
	return c
}

// exec runs a shell line in capsule id through the API and returns stdout+stderr and the exit code.
func (s *suite) exec(t *testing.T, id, line string) (string, int) {
	t.Helper()
	res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+id+"/exec", s.owner,
		map[string]any{"cmd": "/bin/sh", "args": []string{"-c", line}, "timeout_sec": 90})
	if res.Status != 200 {
		t.Fatalf("exec %q: %d %s", line, res.Status, res.Body)
	}
	var out struct {
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
		ExitCode int    `json:"exit_code"`
	}
	res.JSON(t, &out)
	return out.Stdout + out.Stderr, out.ExitCode
}

// mustExec is exec that fails the test on a non-zero exit.
func (s *suite) mustExec(t *testing.T, id, line string) string {
	t.Helper()
	out, code := s.exec(t, id, line)
	if code != 0 {
		t.Fatalf("exec %q: exit %d: %s", line, code, out)
	}
	return out
}

// installProbe writes the probe binary (tests/security/probe) to /tmp/probe in capsule id.
func (s *suite) installProbe(t *testing.T, id string) {
	t.Helper()
	b, err := os.ReadFile(testutil.BuildBinary(t, "./tests/security/probe"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("path", "/tmp/probe")
	fw, err := w.CreateFormFile("file", "probe")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(b)
	_ = w.Close()
	res := cptest.Call(t, s.p.URL(), "POST", "/v1/capsules/"+id+"/files/write", s.owner,
		&multipartBody{Buffer: &buf, contentType: w.FormDataContentType()})
	if res.Status != 204 {
		t.Fatalf("write probe: %d %s", res.Status, res.Body)
	}
	s.mustExec(t, id, "chmod 755 /tmp/probe")
}

// probe runs the probe in capsule id with args and reports its output and whether it got a 2xx answer.
func (s *suite) probe(t *testing.T, id string, args ...string) (string, bool) {
	t.Helper()
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	out, code := s.exec(t, id, "/tmp/probe "+strings.Join(quoted, " "))
	return out, code == 0
}

// multipartBody is a multipart request body with its Content-Type (cptest sets it).
type multipartBody struct {
	*bytes.Buffer
	contentType string
}

func (m *multipartBody) ContentType() string { return m.contentType }

// proxied sends a request through the control plane's port proxy to port of capsule id (host name
// {port}-{id}.localhost on the API listener) with headers as name, value pairs.
func (s *suite) proxied(t *testing.T, method string, port int, id, path, body string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.p.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = fmt.Sprintf("%d-%s.localhost", port, id)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s on port %d: %v", method, path, port, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// errorCode returns error.code of an API error body.
func errorCode(body string) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error.Code
}
