// Package agentcp_test runs the real wrenn-agent against a control plane: a fake enrollment server
// (registration, heartbeats, credentials, deletion) and the control plane's real port proxy in front
// of the agent's /proxy over mutual TLS.
package agentcp_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/portproxy"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/hostagent/enroll/enrolltest"
	"github.com/wrenn/wrenn/internal/pki"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/agenthost"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// mtlsClient is the control plane's view of the agent: Connect over HTTPS
// with the CA-signed client certificate, the agent's certificate checked
// against the CA and its host id.
func mtlsClient(t *testing.T, cp *enrolltest.ControlPlane, addr string) (hostagentv1connect.HostAgentServiceClient, *http.Client) {
	t.Helper()
	kp, err := cp.CA.IssueClient()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCertificate(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ControlPlaneTLSConfig(cert, cp.CA.CertPEM(), enrolltest.HostID)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	t.Cleanup(hc.CloseIdleConnections)
	return hostagentv1connect.NewHostAgentServiceClient(hc, "https://"+addr), hc
}

func waitFor(t *testing.T, h *agenthost.Host, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; agent log:\n%s", what, h.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentWithControlPlane(t *testing.T) {
	cp := enrolltest.New(t)
	h := agenthost.Start(t, agenthost.Options{
		NoWait: true,
		Args:   []string{"-control-plane", cp.URL, "-registration-token", cp.RegistrationToken, "-heartbeat-interval", "200ms"},
	})
	waitFor(t, h, "registration and a heartbeat", 30*time.Second, func() bool { return len(cp.Heartbeats()) >= 1 })
	regs := cp.Registrations()
	if len(regs) != 1 || regs[0].Address != h.Addr || regs[0].Arch == "" || regs[0].CPUCores < 1 || regs[0].MemoryMB < 1 || regs[0].DiskGB < 1 {
		t.Fatalf("registrations %+v (agent at %s)", regs, h.Addr)
	}
	state := filepath.Join(h.DataDir, "credentials.json")
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	api, hc := mtlsClient(t, cp, h.Addr)
	if _, err := api.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{})); err != nil {
		t.Fatalf("mutual TLS client refused: %v", err)
	}
	// The port proxy is on the same listener.
	resp, err := hc.Get("https://" + h.Addr + "/proxy/" + ids.Capsule.Format(uuid.New()) + "/8080/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.ProtoMajor != 2 {
		t.Fatalf("proxy over mutual TLS: %d %s", resp.StatusCode, resp.Proto)
	}

	// Without a client certificate, or with one of another CA, or in plain HTTP: refused.
	pool, _ := pki.CertPool(cp.CA.CertPEM())
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer noCert.CloseIdleConnections()
	bare := hostagentv1connect.NewHostAgentServiceClient(noCert, "https://"+h.Addr)
	if _, err := bare.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{})); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	other := enrolltest.New(t) // another CA
	otherAPI, _ := mtlsClient(t, other, h.Addr)
	if _, err := otherAPI.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{})); err == nil {
		t.Fatal("client certificate of another CA accepted")
	}
	if _, err := h.API.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{})); err == nil {
		t.Fatal("plain HTTP accepted")
	}

	// A restart keeps the credentials: no second registration.
	h.Stop()
	h.Start()
	n := len(cp.Heartbeats())
	waitFor(t, h, "heartbeats after restart", 30*time.Second, func() bool { return len(cp.Heartbeats()) > n })
	if len(cp.Registrations()) != 1 {
		t.Fatalf("%d registrations after restart", len(cp.Registrations()))
	}
	api, hc = mtlsClient(t, cp, h.Addr)

	// The control plane goes silent: after 3 failed heartbeats every capsule is paused.
	id := ids.Capsule.Format(uuid.New())
	if _, err := api.CreateSandbox(ctx, connect.NewRequest(&hav1.CreateSandboxRequest{SandboxId: id, TemplateId: "minimal"})); err != nil {
		t.Fatal(err)
	}
	checkPortProxy(t, ctx, api, h, hc, id)

	cp.SetHeartbeatStatus(http.StatusServiceUnavailable)
	var auto []string
	waitFor(t, h, "capsules paused", 30*time.Second, func() bool {
		list, err := api.ListSandboxes(ctx, connect.NewRequest(&hav1.ListSandboxesRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		auto = append(auto, list.Msg.GetAutoPausedSandboxIds()...)
		return len(list.Msg.GetSandboxes()) == 1 && list.Msg.GetSandboxes()[0].GetStatus() == hav1.SandboxStatus_SANDBOX_STATUS_PAUSED && len(auto) > 0
	})
	if len(auto) != 1 || auto[0] != id {
		t.Fatalf("auto-paused %v, want [%s]", auto, id)
	}
	if !strings.Contains(h.LogTail(), "control plane lost") {
		t.Fatal("no log of the lost control plane")
	}
	cp.SetHeartbeatStatus(0)

	// The host is deleted: credentials removed, the agent exits.
	cp.Delete()
	select {
	case <-h.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("agent did not exit after deletion:\n%s", h.LogTail())
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("credentials file after deletion: %v", err)
	}
	if !strings.Contains(h.LogTail(), "host deleted by the control plane") {
		t.Fatalf("agent log:\n%s", h.LogTail())
	}
}

// checkPortProxy serves a page from the capsule and fetches it the way the
// public does: control-plane port proxy → agent /proxy over mutual TLS →
// capsule.
func checkPortProxy(t *testing.T, ctx context.Context, api hostagentv1connect.HostAgentServiceClient, h *agenthost.Host, hc *http.Client, id string) {
	t.Helper()
	if _, err := api.WriteFile(ctx, connect.NewRequest(&hav1.WriteFileRequest{SandboxId: id, Path: "/tmp/www/index.html", Content: []byte("through the chain\n")})); err != nil {
		t.Fatal(err)
	}
	if _, err := api.StartBackground(ctx, connect.NewRequest(&hav1.StartBackgroundRequest{SandboxId: id, Cmd: "httpd", Args: []string{"-f", "-p", "8080", "-h", "/tmp/www"}})); err != nil {
		t.Fatal(err)
	}
	capsuleID, err := ids.Capsule.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	hostID := uuid.New()
	p, err := portproxy.New(portproxy.Config{
		Store:      capsuleStore{capsuleID: {ID: capsuleID, Status: "running", HostID: &hostID}},
		Transports: transports{base: "https://" + h.Addr, rt: hc.Transport},
		Domain:     "wrenn.test",
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(p.Middleware(http.NotFoundHandler()))
	defer front.Close()
	waitFor(t, h, "page through the port proxy", 60*time.Second, func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/index.html?q=1", nil)
		req.Host = "8080-" + id + ".wrenn.test"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && string(b) == "through the chain\n"
	})
}

type capsuleStore map[uuid.UUID]db.Capsule

func (s capsuleStore) GetCapsuleByID(_ context.Context, id uuid.UUID) (db.Capsule, error) {
	c, ok := s[id]
	if !ok {
		return db.Capsule{}, pgx.ErrNoRows
	}
	return c, nil
}

type transports struct {
	base string
	rt   http.RoundTripper
}

func (t transports) Transport(context.Context, uuid.UUID) (string, http.RoundTripper, error) {
	return t.base, t.rt, nil
}
