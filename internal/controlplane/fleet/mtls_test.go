package fleet_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"go.uber.org/goleak"

	hostagentv1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
	"github.com/wrenn/wrenn/internal/controlplane/fleet"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/pki"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
)

// fakeAgent is a host agent serving only what these tests call.
type fakeAgent struct {
	hostagentv1connect.UnimplementedHostAgentServiceHandler
	terminated atomic.Bool
	lastProto  atomic.Value // string: protocol of the last request
	lastClient atomic.Value // string: CN of the last client certificate
	requests   atomic.Int64
}

func (a *fakeAgent) ListSandboxes(context.Context, *connect.Request[hostagentv1.ListSandboxesRequest]) (*connect.Response[hostagentv1.ListSandboxesResponse], error) {
	return connect.NewResponse(&hostagentv1.ListSandboxesResponse{AutoPausedSandboxIds: []string{"cl-test"}}), nil
}

func (a *fakeAgent) Terminate(context.Context, *connect.Request[hostagentv1.TerminateRequest]) (*connect.Response[hostagentv1.TerminateResponse], error) {
	a.terminated.Store(true)
	return connect.NewResponse(&hostagentv1.TerminateResponse{}), nil
}

// startAgent registers a host whose agent is a fake served over the issued mTLS certificate, the way
// the real agent serves its RPCs and the port proxy.
func startAgent(t *testing.T, e *env) (fleet.Credentials, *fakeAgent, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	creds := e.onlineHost(t, ln.Addr().String())
	agent := serveAgent(t, ln, creds)
	return creds, agent, ln.Addr().String()
}

// serveAgent serves a fake agent on ln with the certificate of creds until the test ends.
func serveAgent(t *testing.T, ln net.Listener, creds fleet.Credentials) *fakeAgent {
	t.Helper()
	cert, err := pki.NewCertificate([]byte(creds.CertPEM), []byte(creds.KeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.AgentTLSConfig(cert, []byte(creds.CACertPEM))
	if err != nil {
		t.Fatal(err)
	}
	agent := &fakeAgent{}
	mux := http.NewServeMux()
	mux.Handle(hostagentv1connect.NewHostAgentServiceHandler(agent))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"status":"ok"}`) })
	mux.HandleFunc("/proxy/{sandbox}/{port}/{path...}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.PathValue("sandbox")+":"+r.PathValue("port")+":"+r.PathValue("path"))
	})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			agent.requests.Add(1)
			agent.lastProto.Store(r.Proto)
			agent.lastClient.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
			mux.ServeHTTP(w, r)
		}),
		TLSConfig: cfg,
		// Rejected handshakes are expected here.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return agent
}

func TestAgentMutualTLS(t *testing.T) {
	// Registered first, checked last: after the agent, the service and the database are closed.
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// The shared PostgreSQL server may have been started by this test.
		goleak.VerifyNone(t, ignore, goleak.IgnoreAnyFunction("github.com/wrenn/wrenn/internal/cli/pgcluster.(*Cluster).StartChild.func1"))
	})
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creds, agent, addr := startAgent(t, e)
	hid := hostUUID(t, creds.Host.ID)

	client, err := e.svc.Agent(ctx, hid)
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.ListSandboxes(ctx, connect.NewRequest(&hostagentv1.ListSandboxesRequest{}))
	if err != nil {
		t.Fatalf("ListSandboxes over mTLS: %v", err)
	}
	if ids := res.Msg.GetAutoPausedSandboxIds(); len(ids) != 1 || ids[0] != "cl-test" {
		t.Fatalf("response %v", res.Msg)
	}
	if p := agent.lastProto.Load(); p != "HTTP/2.0" {
		t.Fatalf("protocol %v, want HTTP/2.0", p)
	}
	if cn := agent.lastClient.Load(); cn != pki.ClientCommonName {
		t.Fatalf("client certificate CN %v", cn)
	}
	again, err := e.svc.Agent(ctx, hid)
	if err != nil || again != client {
		t.Fatalf("client not cached: %v", err)
	}

	// The port proxy transport uses the same TLS.
	base, rt, err := e.svc.Transport(ctx, hid)
	if err != nil {
		t.Fatal(err)
	}
	if base != "https://"+addr {
		t.Fatalf("base URL %q", base)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/proxy/cl-x/8080/a/b", nil)
	if err != nil {
		t.Fatal(err)
	}
	hres, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(hres.Body)
	hres.Body.Close()
	if string(body) != "cl-x:8080:a/b" {
		t.Fatalf("proxy answered %d %q", hres.StatusCode, body)
	}

	// The agent rejects clients with a certificate of another CA, and clients without one.
	other, err := pki.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueClient()
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, err := pki.NewCertificate(foreign.CertPEM, foreign.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	foreignCfg, err := pki.ControlPlaneTLSConfig(foreignCert, e.svc.CACertPEM(), creds.Host.ID)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pki.CertPool(e.svc.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{
		"foreign CA":     foreignCfg,
		"no certificate": {MinVersion: tls.VersionTLS13, RootCAs: pool},
	} {
		t.Run(name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
			defer tr.CloseIdleConnections()
			c := hostagentv1connect.NewHostAgentServiceClient(&http.Client{Transport: tr}, "https://"+addr)
			before := agent.requests.Load()
			_, err := c.ListSandboxes(ctx, connect.NewRequest(&hostagentv1.ListSandboxesRequest{}))
			// TLS 1.3 reports the rejection after the client's handshake finished: the client sees the
			// alert or a connection the agent closed.
			if err == nil || agent.requests.Load() != before {
				t.Fatalf("agent accepted the client: %v", err)
			}
		})
	}

	// The control plane rejects an agent presenting another host's certificate: host b's address
	// points at host a's agent.
	b := e.createHost(t, e.admin.JWT, map[string]any{"type": "regular"})
	bCreds := e.register(t, b.RegistrationToken, addr)
	// The probe of a heartbeat refuses it too: the host stays pending.
	want(t, e.Do(t, "POST", hostPath(bCreds.Host.ID, "heartbeat"), cptest.Cred{HostToken: bCreds.Token}, nil), 204, "")
	if st := e.hostStatus(t, bCreds.Host.ID); st != store.HostPending {
		t.Fatalf("impostor host is %s", st)
	}
	e.markOnline(t, bCreds.Host.ID)
	bClient, err := e.svc.Agent(ctx, hostUUID(t, bCreds.Host.ID))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bClient.ListSandboxes(ctx, connect.NewRequest(&hostagentv1.ListSandboxesRequest{}))
	if err == nil || !strings.Contains(err.Error(), "agent certificate is for") {
		t.Fatalf("impostor agent: %v", err)
	}

	// Deleting the host with force asks its agent to terminate; afterwards it is unavailable.
	team := e.NewAccount(t, "t", false)
	capsule := e.addCapsule(t, team.Team, hid, store.CapsuleRunning, 256)
	want(t, e.Do(t, "DELETE", hostPath(creds.Host.ID)+"?force=true", cptest.Bearer(e.admin.JWT), nil), 204, "")
	if !agent.terminated.Load() {
		t.Fatal("agent not asked to terminate")
	}
	if st := e.capsuleStatus(t, capsule); st != store.CapsuleStopped {
		t.Fatalf("capsule is %s", st)
	}
	_, err = e.svc.Agent(ctx, hid)
	wantUnavailable(t, err)
}
