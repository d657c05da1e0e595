package builder_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// buildTimeout bounds one build: the first one waits for the agent to debootstrap `base`.
const buildTimeout = 15 * time.Minute

type logEntry struct {
	Step      int    `json:"step"`
	Phase     string `json:"phase"`
	Cmd       string `json:"cmd"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Exit      int    `json:"exit"`
	OK        bool   `json:"ok"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

type build struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	CurrentStep int               `json:"current_step"`
	TotalSteps  int               `json:"total_steps"`
	Logs        []logEntry        `json:"logs"`
	Error       string            `json:"error"`
	CapsuleID   string            `json:"capsule_id"`
	DefaultUser string            `json:"default_user"`
	DefaultEnv  map[string]string `json:"default_env"`
}

// newPlatform is a platform with one control plane (extra flags cpArgs) and one host; the builds use
// the Debian base image.
func newPlatform(t testing.TB, cpArgs ...string) *platform.Platform {
	t.Helper()
	t.Setenv("WRENN_TEST_DEBOOTSTRAP", "1")
	p := platform.New(t, 1, cpArgs...)
	p.AddHost(t, false)
	return p
}

// form is a multipart body for cptest.Call.
type form struct {
	*bytes.Buffer
	ctype string
}

func (f form) ContentType() string { return f.ctype }

func multipartBody(t *testing.T, config any, archive []byte) form {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	cfg, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteField("config", string(cfg)); err != nil {
		t.Fatal(err)
	}
	if archive != nil {
		fw, err := w.CreateFormFile("archive", "context.bin")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(archive)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return form{Buffer: &buf, ctype: w.FormDataContentType()}
}

// createBuild posts a build (multipart when archive is not nil) and returns it.
func createBuild(t *testing.T, p *platform.Platform, config map[string]any, archive []byte) build {
	t.Helper()
	var body any = config
	if archive != nil {
		body = multipartBody(t, config, archive)
	}
	res := cptest.Call(t, p.URL(), "POST", "/v1/admin/builds", cptest.Bearer(p.Admin), body)
	if res.Status != 201 {
		t.Fatalf("create build: %d %s", res.Status, res.Body)
	}
	var b build
	res.JSON(t, &b)
	if b.Status != "pending" || !strings.HasPrefix(b.ID, "bld-") {
		t.Fatalf("created build %+v", b)
	}
	return b
}

func getBuild(t *testing.T, p *platform.Platform, id string) build {
	t.Helper()
	res := cptest.Call(t, p.URL(), "GET", "/v1/admin/builds/"+id, cptest.Bearer(p.Admin), nil)
	if res.Status != 200 {
		t.Fatalf("get build: %d %s", res.Status, res.Body)
	}
	var b build
	res.JSON(t, &b)
	return b
}

// waitBuild polls build id until its status is one of want; another terminal status fails the test.
func waitBuild(t *testing.T, p *platform.Platform, id string, d time.Duration, want ...string) build {
	t.Helper()
	var b build
	platform.Eventually(t, d, "build "+id+" "+strings.Join(want, "|"), func() error {
		b = getBuild(t, p, id)
		if slices.Contains(want, b.Status) {
			return nil
		}
		if b.Status == "success" || b.Status == "failed" || b.Status == "cancelled" {
			t.Fatalf("build %s ended %s: %s\n%+v", id, b.Status, b.Error, b.Logs)
		}
		return fmt.Errorf("status %s, step %d/%d", b.Status, b.CurrentStep, b.TotalSteps)
	})
	return b
}

// capsuleStatus reads a platform capsule's status.
func capsuleStatus(t *testing.T, p *platform.Platform, id string) string {
	t.Helper()
	res := cptest.Call(t, p.URL(), "GET", "/v1/admin/capsules/"+id, cptest.Bearer(p.Admin), nil)
	var c struct{ Status string }
	res.JSON(t, &c)
	return c.Status
}

// waitCapsuleGone waits until platform capsule id is stopped.
func waitCapsuleGone(t *testing.T, p *platform.Platform, id string) {
	t.Helper()
	platform.Eventually(t, 120*time.Second, "capsule "+id+" destroyed", func() error {
		if st := capsuleStatus(t, p, id); st != "stopped" {
			return fmt.Errorf("status %q", st)
		}
		return nil
	})
}

// execIn runs a shell line in a team capsule (as its default user) and returns stdout; a non-zero exit
// fails the test.
func execIn(t *testing.T, p *platform.Platform, id, script string) string {
	t.Helper()
	res := cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+id+"/exec", cptest.Key(p.Key),
		map[string]any{"cmd": "/bin/sh", "args": []string{"-c", script}, "timeout_sec": 60})
	var out struct {
		Stdout, Stderr string
		ExitCode       int `json:"exit_code"`
	}
	res.JSON(t, &out)
	if res.Status != 200 || out.ExitCode != 0 {
		t.Fatalf("exec %q: %d %s", script, res.Status, res.Body)
	}
	return out.Stdout
}

type file struct {
	name, body string
	dir        bool
}

func tarGz(t *testing.T, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg, Uid: 4242, Gid: 4242}
		if f.dir {
			h = &tar.Header{Name: f.name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(f.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipOf(t *testing.T, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(f.body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
