package envdclient

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestClientAgainstEnvd(t *testing.T) {
	testutil.Integration(t)
	e := testutil.StartEnvd(t)
	c := New(e.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Init(ctx, Init{EnvVars: map[string]string{"WRENN_TEST": "1"}, DefaultUser: "root"}); err != nil {
		t.Fatalf("init: %v", err)
	}
	if err := c.PrepareSnapshot(ctx); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if err := c.Init(ctx, Init{}); err != nil {
		t.Fatalf("init after prepare: %v", err)
	}
	m, err := c.Metrics(ctx)
	if err != nil || m.CPUCount == 0 || m.MemTotal == 0 {
		t.Fatalf("metrics %+v, %v", m, err)
	}

	path := t.TempDir() + "/sub/f.txt"
	if err := c.Upload(ctx, path, "root", strings.NewReader("content")); err != nil {
		t.Fatalf("upload: %v", err)
	}
	rc, err := c.Download(ctx, path, "root")
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	b, _ := io.ReadAll(rc)
	_ = rc.Close()
	if string(b) != "content" {
		t.Fatalf("downloaded %q", b)
	}
	if _, err := c.Download(ctx, path+".missing", "root"); StatusOf(err) != 404 {
		t.Fatalf("missing file: %v (status %d)", err, StatusOf(err))
	}
	st, err := c.FS.Stat(ctx, connect.NewRequest(&filesystem.StatRequest{Path: path}))
	if err != nil || st.Msg.GetEntry().GetSize() != 7 {
		t.Fatalf("stat: %v %v", st, err)
	}

	// Bad input to /init is a 400, reported with envd's message.
	bad := &Client{base: c.base, http: c.http}
	if err := bad.simple(ctx, "POST", "/init", "not an object"); StatusOf(err) != 400 {
		t.Fatalf("bad init: %v", err)
	}
}

func TestWaitHealthyGivesUp(t *testing.T) {
	c := New("127.0.0.1:1")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := c.WaitHealthy(ctx); err == nil {
		t.Fatal("WaitHealthy succeeded with nothing listening")
	}
}
