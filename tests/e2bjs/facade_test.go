package e2bjs_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// TestE2BFacadeMinimal drives the E2B API and the port proxy without the SDK, on the fast minimal
// template: create through /v2/sandboxes, envd's /health and a Connect call through header routing
// with the sandbox's envdAccessToken, the sandbox through /v1, kill.
func TestE2BFacadeMinimal(t *testing.T) {
	p := platform.New(t, 1, "--proxy-domain", "localhost")
	p.AddHost(t, false)
	base := p.URL()
	call := func(method, path string, hdr map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	api := map[string]string{"X-API-KEY": p.Key, "Content-Type": "application/json"}
	st, body := call("POST", "/v2/sandboxes", api, `{"templateID":"minimal","metadata":{"k":"v"},"envVars":{"E2B_VAR":"set"}}`)
	if st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	var sbx struct {
		SandboxID, EnvdVersion, EnvdAccessToken string
		Domain                                  *string
	}
	if err := json.Unmarshal([]byte(body), &sbx); err != nil || sbx.SandboxID == "" || sbx.EnvdAccessToken == "" || sbx.Domain == nil {
		t.Fatalf("create answered %s", body)
	}
	v1ID := "/v1/capsules/cl-" + strings.TrimPrefix(sbx.SandboxID, "cl")
	t.Cleanup(func() { cptest.Call(t, base, "DELETE", v1ID, cptest.Key(p.Key), nil) })
	if !strings.HasSuffix(*sbx.Domain, p.CPs[0].URL[strings.LastIndex(p.CPs[0].URL, ":"):]) {
		t.Errorf("domain %q does not carry the API's port", *sbx.Domain)
	}

	envd := map[string]string{"E2b-Sandbox-Id": sbx.SandboxID, "E2b-Sandbox-Port": "49983", "X-Access-Token": sbx.EnvdAccessToken}
	if st, body := call("GET", "/health", envd, ""); st/100 != 2 || !strings.Contains(body, sbx.EnvdVersion) {
		t.Fatalf("envd /health through the proxy: %d %s (envdVersion %s)", st, body, sbx.EnvdVersion)
	}
	rpc := map[string]string{"E2b-Sandbox-Id": sbx.SandboxID, "X-Access-Token": sbx.EnvdAccessToken,
		"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
	if st, body := call("POST", "/process.Process/List", rpc, `{}`); st != 200 {
		t.Fatalf("process.List through the proxy: %d %s", st, body)
	}

	// The same sandbox through /v1 and the same key.
	res := cptest.Call(t, base, "GET", v1ID, cptest.Key(p.Key), nil)
	if res.Status != 200 || !strings.Contains(string(res.Body), `"status":"running"`) {
		t.Fatalf("/v1 view: %d %s", res.Status, res.Body)
	}
	res = cptest.Call(t, base, "POST", v1ID+"/exec", cptest.Key(p.Key),
		map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "echo $E2B_VAR; id -un"}})
	if res.Status != 200 || !strings.Contains(string(res.Body), `set\nuser\n`) {
		t.Fatalf("/v1 exec in the E2B sandbox: %d %s", res.Status, res.Body)
	}

	if st, body := call("DELETE", "/sandboxes/"+sbx.SandboxID, api, ""); st != 204 {
		t.Fatalf("kill: %d %s", st, body)
	}
	if st, body := call("GET", "/sandboxes/"+sbx.SandboxID, api, ""); st != 404 || !strings.Contains(body, `"code":404`) {
		t.Fatalf("get after kill: %d %s", st, body)
	}

	// The pre-v2 create route with the body SDK 2.50 sends, and envd at once through the proxy.
	st, body = call("POST", "/sandboxes", api, `{"templateID":"minimal","timeout":600,"secure":true,"allow_internet_access":true,"metadata":{"sdk":"2.50"},"envVars":{"FROM":"v1 route"}}`)
	if st != 201 {
		t.Fatalf("create (v1 route): %d %s", st, body)
	}
	var second struct{ SandboxID, EnvdAccessToken string }
	if err := json.Unmarshal([]byte(body), &second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cptest.Call(t, base, "DELETE", "/v1/capsules/cl-"+strings.TrimPrefix(second.SandboxID, "cl"), cptest.Key(p.Key), nil)
	})
	rpc = map[string]string{"E2b-Sandbox-Id": second.SandboxID, "X-Access-Token": second.EnvdAccessToken,
		"Content-Type": "application/json", "Connect-Protocol-Version": "1"}
	if st, body := call("POST", "/process.Process/List", rpc, `{}`); st != 200 {
		t.Fatalf("process.List in the second sandbox: %d %s", st, body)
	}
}
