package rpc_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
)

// TestProxyRealCapsule proxies to servers inside a real capsule of a real
// agent: busybox httpd on the capsule's address and on its loopback only
// (reached through envd's port forwarder).
func TestProxyRealCapsule(t *testing.T) {
	h := agenthost.Start(t, agenthost.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id := ids.Capsule.Format(uuid.New())
	if _, err := h.API.CreateSandbox(ctx, connect.NewRequest(&hav1.CreateSandboxRequest{SandboxId: id, TemplateId: "minimal", EnvdAccessToken: "t0ken"})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.API.WriteFile(ctx, connect.NewRequest(&hav1.WriteFileRequest{
		SandboxId: id, Path: "/tmp/www/index.html", Content: []byte("hello from the capsule\n"),
	})); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-f", "-p", "8080", "-h", "/tmp/www"},
		{"-f", "-p", "127.0.0.1:8081", "-h", "/tmp/www"},
	} {
		if _, err := h.API.StartBackground(ctx, connect.NewRequest(&hav1.StartBackgroundRequest{SandboxId: id, Cmd: "httpd", Args: args})); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + h.Addr + "/proxy/" + id

	get := func(path string, hdr ...string) (int, string) {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, base+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	eventually := func(path string, status int, body string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			st, b := get(path)
			if st == status && strings.Contains(b, body) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %d %q, want %d %q", path, st, b, status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	eventually("/8080/index.html?x=1", 200, "hello from the capsule")
	// Bound to the capsule's loopback only: envd forwards it once its scanner sees it.
	eventually("/8081/index.html", 200, "hello from the capsule")
	eventually("/8080/missing.html", 404, "")

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/49983/init", 403},
		{"/49983/snapshot/prepare", 403},
		{"/49983/health", 401}, // envd's port needs the token
		{"/notaport/", 400},
		{"/70000/", 400},
		{"/9999/", 502},
	} {
		if st, b := get(tc.path); st != tc.status {
			t.Errorf("GET %s: %d %s, want %d", tc.path, st, b, tc.status)
		}
	}
	if st, b := get("/49983/health", "X-Access-Token", "t0ken"); st != 200 {
		t.Errorf("GET /49983/health with the token: %d %s", st, b)
	}
	other := "http://" + h.Addr + "/proxy/" + ids.Capsule.Format(uuid.New()) + "/8080/"
	if resp, err := http.Get(other); err != nil || resp.StatusCode != 503 {
		t.Fatalf("unknown capsule: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Paused: 503. Resumed with a 2 s inactivity timeout: proxy traffic does
	// not keep it running.
	if _, err := h.API.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	if st, b := get("/8080/index.html"); st != 503 {
		t.Fatalf("paused capsule: %d %s", st, b)
	}
	if _, err := h.API.ResumeSandbox(ctx, connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: id, TimeoutSec: 2})); err != nil {
		t.Fatal(err)
	}
	eventually("/8080/index.html", 200, "hello from the capsule")
	deadline := time.Now().Add(60 * time.Second)
	served := 0
	for {
		st, _ := get("/8080/index.html")
		if st == 503 {
			break
		}
		served++
		if time.Now().After(deadline) {
			t.Fatal("capsule kept running under proxy traffic: proxying counts as activity")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if served < 10 {
		t.Fatalf("only %d proxied requests before the pause", served)
	}
	// 503 shows from the start of the pause; the id is reported once it is done.
	var auto []string
	for end := time.Now().Add(60 * time.Second); len(auto) == 0 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		list, err := h.API.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		auto = list.Msg.GetAutoPausedSandboxIds()
	}
	if got := fmt.Sprint(auto); got != "["+id+"]" {
		t.Fatalf("auto-paused %s, want [%s] (after %d proxied requests)", got, id, served)
	}
}
