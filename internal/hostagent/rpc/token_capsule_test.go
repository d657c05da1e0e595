package rpc_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
)

// TestEnvdAccessTokenRealCapsule: a real capsule's envd requires the token
// the agent was given (docs/security.md) — from the host, through the port
// proxy and from a non-root process inside the capsule — while the agent's
// own calls carry it; it still holds after a pause and resume.
func TestEnvdAccessTokenRealCapsule(t *testing.T) {
	h := agenthost.Start(t, agenthost.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	id := ids.Capsule.Format(uuid.New())
	const token = "tok-0123456789abcdef0123456789abcdef0123456789"
	res, err := h.API.CreateSandbox(ctx, connect.NewRequest(&hav1.CreateSandboxRequest{
		SandboxId: id, TemplateId: "minimal", EnvdAccessToken: token,
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = h.API.DestroySandbox(context.Background(), connect.NewRequest(&hav1.DestroySandboxRequest{SandboxId: id}))
	})

	exec := func(user, cmd string) *hav1.ExecResponse {
		t.Helper()
		r, err := h.API.Exec(ctx, connect.NewRequest(&hav1.ExecRequest{SandboxId: id, Cmd: "/bin/sh", Args: []string{"-c", cmd}, User: user}))
		if err != nil {
			t.Fatalf("exec %q as %q: %v", cmd, user, err)
		}
		return r.Msg
	}
	status := func(method, url, tok, body string) int {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		req, _ := http.NewRequestWithContext(rctx, method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set(envdclient.TokenHeader, tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	checkEnvd := func(when string, hostIP string) {
		t.Helper()
		envd := "http://" + net.JoinHostPort(hostIP, "49983")
		proxy := "http://" + h.Addr + "/proxy/" + id + "/49983"
		for _, tc := range []struct {
			name, method, url, tok string
			want                   int
		}{
			{"envd /envs without token", http.MethodGet, envd + "/envs", "", 401},
			{"envd /envs wrong token", http.MethodGet, envd + "/envs", "nope", 401},
			{"envd /envs with token", http.MethodGet, envd + "/envs", token, 200},
			{"envd RPC without token", http.MethodPost, envd + "/process.Process/List", "", 401},
			{"envd RPC with token", http.MethodPost, envd + "/process.Process/List", token, 200},
			{"envd /health", http.MethodGet, envd + "/health", "", 200},
			{"proxy /health without token", http.MethodGet, proxy + "/health", "", 401},
			{"proxy /envs wrong token", http.MethodGet, proxy + "/envs", "nope", 401},
			{"proxy /health with token", http.MethodGet, proxy + "/health", token, 200},
			{"proxy RPC with token", http.MethodPost, proxy + "/process.Process/List", token, 200},
		} {
			if got := status(tc.method, tc.url, tc.tok, "{}"); got != tc.want {
				t.Errorf("%s: %s: %d, want %d", when, tc.name, got, tc.want)
			}
		}
		// The agent's own envd calls carry the token.
		if out := exec("", "echo ok"); string(out.Stdout) != "ok\n" {
			t.Errorf("%s: agent exec: %q %q %d", when, out.Stdout, out.Stderr, out.ExitCode)
		}
	}
	checkEnvd("after create", res.Msg.GetHostIp())

	// A non-root process inside the capsule cannot re-initialise envd.
	before := exec("", "id -un; echo \"[$WRN_EVIL]\"")
	for _, body := range []string{
		`{"defaultUser":"user","envVars":{"WRN_EVIL":"1"}}`,
		`{"defaultUser":"user","envVars":{"WRN_EVIL":"1"},"accessToken":"mine"}`,
	} {
		out := exec("user", `wget -q -O- --header 'Content-Type: application/json' --post-data '`+body+`' http://127.0.0.1:49983/init`)
		if out.ExitCode == 0 || !strings.Contains(string(out.Stderr), "401") {
			t.Errorf("/init %s from inside without the token: exit %d stdout %q stderr %q, want a 401", body, out.ExitCode, out.Stdout, out.Stderr)
		}
	}
	out := exec("user", `wget -q -O- http://127.0.0.1:49983/envs`)
	if out.ExitCode == 0 || !strings.Contains(string(out.Stderr), "401") {
		t.Errorf("/envs from inside without the token: exit %d stderr %q, want a 401", out.ExitCode, out.Stderr)
	}
	if after := exec("", "id -un; echo \"[$WRN_EVIL]\""); string(after.Stdout) != string(before.Stdout) || string(after.Stdout) == "" {
		t.Errorf("default user/env changed by a refused /init: %q, before %q", after.Stdout, before.Stdout)
	}

	// Pause and resume: the same token still works, and is still required.
	if _, err := h.API.PauseSandbox(ctx, connect.NewRequest(&hav1.PauseSandboxRequest{SandboxId: id})); err != nil {
		t.Fatal(err)
	}
	res, err = h.API.ResumeSandbox(ctx, connect.NewRequest(&hav1.ResumeSandboxRequest{SandboxId: id, EnvdAccessToken: token}))
	if err != nil {
		t.Fatal(err)
	}
	checkEnvd("after resume", res.Msg.GetHostIp())
}
