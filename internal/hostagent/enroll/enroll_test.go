package enroll_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/enroll"
	"github.com/wrenn/wrenn/internal/hostagent/enroll/enrolltest"
	"github.com/wrenn/wrenn/internal/pki"
)

const interval = 20 * time.Millisecond

type harness struct {
	cp        *enrolltest.ControlPlane
	state     string
	paused    atomic.Int32
	pausedAt  atomic.Int32 // heartbeats received when PauseAll was first called
	deleted   chan struct{}
	deletedOK atomic.Bool
}

func newHarness(t *testing.T) *harness {
	return &harness{cp: enrolltest.New(t), state: filepath.Join(t.TempDir(), "wrenn", "credentials.json"), deleted: make(chan struct{})}
}

func (h *harness) config(token string) enroll.Config {
	return enroll.Config{
		ControlPlaneURL:   h.cp.URL,
		RegistrationToken: token,
		Address:           "127.0.0.1:9900",
		StateFile:         h.state,
		Specs:             enroll.Specs{Arch: "amd64", CPUCores: 4, MemoryMB: 8192, DiskGB: 100},
		Log:               slog.New(slog.NewTextHandler(io.Discard, nil)),
		HeartbeatInterval: interval,
		PauseAll: func(context.Context) error {
			if h.paused.Add(1) == 1 {
				h.pausedAt.Store(int32(len(h.cp.Heartbeats())))
			}
			return nil
		},
		OnDeleted: func() {
			if h.deletedOK.CompareAndSwap(false, true) {
				close(h.deleted)
			}
		},
	}
}

func (h *harness) enroll(t *testing.T, cfg enroll.Config) (*enroll.Client, enroll.Credentials) {
	t.Helper()
	c, err := enroll.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := c.Enroll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c, creds
}

// run starts Run; the returned func stops it and returns its error.
func run(t *testing.T, c *enroll.Client) (stop func() error, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	t.Cleanup(cancel)
	return func() error { cancel(); return <-errc }, errc
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEnrollRegistersAndStoresCredentials(t *testing.T) {
	h := newHarness(t)
	_, creds := h.enroll(t, h.config(h.cp.RegistrationToken))
	if creds.HostID != enrolltest.HostID || creds.Token == "" || creds.RefreshToken != h.cp.RefreshToken() {
		t.Fatalf("credentials %+v", creds)
	}
	regs := h.cp.Registrations()
	if len(regs) != 1 {
		t.Fatalf("%d registrations", len(regs))
	}
	want := enrolltest.RegisterRequest{Token: h.cp.RegistrationToken, Address: "127.0.0.1:9900", Arch: "amd64", CPUCores: 4, MemoryMB: 8192, DiskGB: 100}
	if regs[0] != want {
		t.Fatalf("registration %+v, want %+v", regs[0], want)
	}
	fi, err := os.Stat(h.state)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v", fi.Mode())
	}
	leaf, err := pki.ParseCertificatePEM(creds.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != enrolltest.HostID || len(leaf.IPAddresses) != 1 || leaf.IPAddresses[0].String() != "127.0.0.1" {
		t.Fatalf("certificate for %s %v", leaf.Subject.CommonName, leaf.IPAddresses)
	}

	// A restart uses the stored credentials: no token needed, no second registration.
	_, again := h.enroll(t, h.config(""))
	if again.HostID != creds.HostID || again.RefreshToken != creds.RefreshToken || string(again.CertPEM) != string(creds.CertPEM) {
		t.Fatal("stored credentials not reused")
	}
	if n := len(h.cp.Registrations()); n != 1 {
		t.Fatalf("%d registrations after restart", n)
	}
}

func TestEnrollRefusesChangedAddress(t *testing.T) {
	h := newHarness(t)
	h.enroll(t, h.config(h.cp.RegistrationToken))
	cfg := h.config("")
	cfg.Address = "127.0.0.2:9900"
	c, err := enroll.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enroll(context.Background()); err == nil || !strings.Contains(err.Error(), "issued for address 127.0.0.1:9900") {
		t.Fatalf("error %v", err)
	}
}

func TestEnrollNeedsToken(t *testing.T) {
	h := newHarness(t)
	c, err := enroll.New(h.config(""))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Enroll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "registration token") {
		t.Fatalf("error %v", err)
	}
	if len(h.cp.Registrations()) != 0 {
		t.Fatal("registered without a token")
	}
}

func TestEnrollRejectedToken(t *testing.T) {
	h := newHarness(t)
	c, err := enroll.New(h.config("not-the-token"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Enroll(context.Background())
	if !errors.Is(err, enroll.ErrRejected) || !strings.Contains(err.Error(), "invalid, used or expired") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(h.state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file after a refusal: %v", err)
	}
}

func TestEnrollRetriesUnreachableControlPlane(t *testing.T) {
	h := newHarness(t)
	// Nothing listens on the address at first; the control plane appears a
	// moment later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := h.config(h.cp.RegistrationToken)
	cfg.ControlPlaneURL = "http://" + addr
	go func() {
		// Only sets the scene: a slow machine may reach the control plane at
		// the first try, which passes too.
		time.Sleep(300 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		srv := &http.Server{Handler: h.cp.Server.Config.Handler}
		t.Cleanup(func() { srv.Close() })
		_ = srv.Serve(ln)
	}()
	_, creds := h.enroll(t, cfg)
	if creds.HostID != enrolltest.HostID {
		t.Fatalf("credentials %+v", creds)
	}
}

func TestEnrollConfigErrors(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ url, addr, want string }{
		{"ftp://x", "127.0.0.1:1", "control plane URL"},
		{h.cp.URL, "0.0.0.0:9900", "wildcard"},
		{h.cp.URL, "agent.example:9900", "IP address"},
		{h.cp.URL, "127.0.0.1", "ip:port"},
	} {
		cfg := h.config("x")
		cfg.ControlPlaneURL, cfg.Address = tc.url, tc.addr
		if _, err := enroll.New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: error %v, want %q", tc.url, tc.addr, err, tc.want)
		}
	}
}

func TestRunHeartbeats(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(h.cp.RegistrationToken)
	cfg.HeartbeatInterval = time.Hour
	c, creds := h.enroll(t, cfg)
	stop, _ := run(t, c)
	// The first heartbeat goes out at once.
	waitFor(t, "first heartbeat", func() bool { return len(h.cp.Heartbeats()) == 1 })
	if got := h.cp.Heartbeats()[0]; got != creds.Token {
		t.Fatalf("heartbeat token %q", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	h2 := newHarness(t)
	c, _ = h2.enroll(t, h2.config(h2.cp.RegistrationToken))
	stop, _ = run(t, c)
	waitFor(t, "five heartbeats", func() bool { return len(h2.cp.Heartbeats()) >= 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if h2.paused.Load() != 0 {
		t.Fatal("PauseAll called while heartbeats succeed")
	}
}

func TestRunPausesAfterThreeFailures(t *testing.T) {
	h := newHarness(t)
	c, _ := h.enroll(t, h.config(h.cp.RegistrationToken))
	h.cp.SetHeartbeatStatus(http.StatusServiceUnavailable)
	stop, _ := run(t, c)
	waitFor(t, "PauseAll", func() bool { return h.paused.Load() == 1 })
	if got := h.pausedAt.Load(); got != enroll.MaxFailures {
		t.Fatalf("PauseAll after %d heartbeats, want %d", got, enroll.MaxFailures)
	}
	// It keeps trying, without pausing again.
	waitFor(t, "more heartbeats", func() bool { return len(h.cp.Heartbeats()) >= 8 })
	if n := h.paused.Load(); n != 1 {
		t.Fatalf("PauseAll called %d times", n)
	}
	// Back online, then lost again: a new streak pauses again.
	h.cp.SetHeartbeatStatus(0)
	n := len(h.cp.Heartbeats())
	waitFor(t, "successful heartbeats", func() bool { return len(h.cp.Heartbeats()) >= n+2 })
	h.cp.SetHeartbeatStatus(http.StatusInternalServerError)
	waitFor(t, "second PauseAll", func() bool { return h.paused.Load() == 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRunPausesWhenUnreachable(t *testing.T) {
	h := newHarness(t)
	c, _ := h.enroll(t, h.config(h.cp.RegistrationToken))
	h.cp.Server.Close()
	stop, _ := run(t, c)
	waitFor(t, "PauseAll", func() bool { return h.paused.Load() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefreshesOn401(t *testing.T) {
	h := newHarness(t)
	c, creds := h.enroll(t, h.config(h.cp.RegistrationToken))
	tlsCfg, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	before := serial(t, tlsCfg)
	h.cp.RevokeTokens()
	stop, _ := run(t, c)
	waitFor(t, "refresh", func() bool { return h.cp.Refreshes() == 1 })
	waitFor(t, "heartbeat with the new token", func() bool {
		beats := h.cp.Heartbeats()
		return len(beats) >= 2 && h.cp.TokenValid(beats[len(beats)-1])
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	now := c.Credentials()
	if now.Token == creds.Token || now.RefreshToken == creds.RefreshToken || now.RefreshToken != h.cp.RefreshToken() {
		t.Fatal("credentials not rotated")
	}
	// Persisted, and the TLS listener serves the new certificate.
	c2, _ := h.enroll(t, h.config(""))
	if c2.Credentials().RefreshToken != now.RefreshToken {
		t.Fatal("refreshed credentials not stored")
	}
	if after := serial(t, tlsCfg); after == before {
		t.Fatal("TLS config still serves the old certificate")
	}
	if h.paused.Load() != 0 {
		t.Fatal("PauseAll called after a successful refresh")
	}
}

func TestRunPersistent401DoesNotLoop(t *testing.T) {
	h := newHarness(t)
	c, _ := h.enroll(t, h.config(h.cp.RegistrationToken))
	h.cp.SetHeartbeatStatus(http.StatusUnauthorized)
	stop, _ := run(t, c)
	waitFor(t, "PauseAll", func() bool { return h.paused.Load() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Each round: refused, refreshed, refused again with the fresh token (a failure).
	if at := h.pausedAt.Load(); at != 2*enroll.MaxFailures {
		t.Fatalf("PauseAll after %d heartbeats, want %d", at, 2*enroll.MaxFailures)
	}
	if n := h.cp.Refreshes(); n < enroll.MaxFailures || n > enroll.MaxFailures+1 {
		t.Fatalf("%d refreshes", n)
	}
}

func TestRunRefreshRejectedPausesAndStops(t *testing.T) {
	h := newHarness(t)
	c, _ := h.enroll(t, h.config(h.cp.RegistrationToken))
	h.cp.RevokeTokens()
	h.cp.SetRefreshStatus(http.StatusUnauthorized)
	_, done := run(t, c)
	select {
	case err := <-done:
		if !errors.Is(err, enroll.ErrRejected) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop")
	}
	if h.paused.Load() != 1 {
		t.Fatalf("PauseAll called %d times", h.paused.Load())
	}
	n := len(h.cp.Heartbeats())
	// A negative check: no heartbeat may come during this window; a slow
	// machine can only make it pass.
	time.Sleep(5 * interval)
	if len(h.cp.Heartbeats()) != n {
		t.Fatal("heartbeats after the refusal")
	}
}

func TestRunHostDeleted(t *testing.T) {
	h := newHarness(t)
	c, _ := h.enroll(t, h.config(h.cp.RegistrationToken))
	_, done := run(t, c)
	waitFor(t, "heartbeat", func() bool { return len(h.cp.Heartbeats()) >= 1 })
	h.cp.Delete()
	select {
	case <-h.deleted:
	case <-time.After(30 * time.Second):
		t.Fatal("OnDeleted not called")
	}
	if err := <-done; err != nil {
		t.Fatalf("Run returned %v", err)
	}
	if _, err := os.Stat(h.state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("state file after deletion: %v", err)
	}
}

func TestRefreshAtHalfLife(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(h.cp.RegistrationToken)
	cfg.HeartbeatInterval = time.Hour
	c, _ := h.enroll(t, cfg)
	stop, _ := run(t, c)
	waitFor(t, "first heartbeat", func() bool { return len(h.cp.Heartbeats()) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if h.cp.Refreshes() != 0 {
		t.Fatal("refreshed fresh credentials")
	}

	// Four days later (past half of 7 d): a restart refreshes at once, and
	// so does Run. The clock is late for the first two looks only (Enroll's
	// and Run's), so each refreshes once and then waits for the new half
	// life.
	var looks atomic.Int32
	cfg.Now = func() time.Time {
		if looks.Add(1) <= 2 {
			return time.Now().Add(4 * 24 * time.Hour)
		}
		return time.Now()
	}
	c, _ = h.enroll(t, cfg)
	if h.cp.Refreshes() != 1 {
		t.Fatalf("%d refreshes at enroll", h.cp.Refreshes())
	}
	stop, _ = run(t, c)
	waitFor(t, "refresh in Run", func() bool { return h.cp.Refreshes() == 2 })
	// A negative check: no further refresh may come during this window; a
	// slow machine can only make it pass.
	time.Sleep(50 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := h.cp.Refreshes(); n != 2 {
		t.Fatalf("%d refreshes: refresh loop does not wait", n)
	}
}

func TestTLSConfigRequiresClientCertificate(t *testing.T) {
	h := newHarness(t)
	c, creds := h.enroll(t, h.config(h.cp.RegistrationToken))
	tlsCfg, err := c.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	url := "https://" + ln.Addr().String()

	pool, _ := pki.CertPool(creds.CACertPEM)
	kp, err := h.cp.CA.IssueClient()
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	get := func(certs []tls.Certificate) error {
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		defer cl.CloseIdleConnections()
		resp, err := cl.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get([]tls.Certificate{clientCert}); err != nil {
		t.Fatalf("client with a CA-signed certificate: %v", err)
	}
	if err := get(nil); err == nil {
		t.Fatal("client without a certificate was accepted")
	}
	other, _ := pki.NewCA()
	okp, _ := other.IssueClient()
	otherCert, _ := tls.X509KeyPair(okp.CertPEM, okp.KeyPEM)
	if err := get([]tls.Certificate{otherCert}); err == nil {
		t.Fatal("client with a certificate of another CA was accepted")
	}
}

func TestDetectSpecs(t *testing.T) {
	s, err := enroll.DetectSpecs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s.Arch == "" || s.CPUCores < 1 || s.MemoryMB < 64 || s.DiskGB < 1 {
		t.Fatalf("specs %+v", s)
	}
}

// serial returns the serial number of the certificate cfg serves now.
func serial(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.String()
}

// Heartbeats carry the pool report and apply the pools of answers that name them; an answer without
// pools (an older control plane) applies nothing.
func TestHeartbeatPools(t *testing.T) {
	h := newHarness(t)
	cfg := h.config(h.cp.RegistrationToken)
	report := []enroll.PoolReport{{
		PoolShape: enroll.PoolShape{Template: "base", VCPUs: 1, MemoryMB: 512, DiskMB: 5120, AllowInternet: true},
		Size:      2, Ready: 1, Hits: 4, Misses: 2,
	}}
	cfg.Pools = func() []enroll.PoolReport { return report }
	var (
		mu      sync.Mutex
		applied [][]enroll.DesiredPool
	)
	cfg.ApplyPools = func(_ context.Context, ps []enroll.DesiredPool) {
		mu.Lock()
		defer mu.Unlock()
		applied = append(applied, ps)
	}
	c, _ := h.enroll(t, cfg)
	stop, _ := run(t, c)
	defer stop()
	waitFor(t, "heartbeats", func() bool { return len(h.cp.HeartbeatBodies()) >= 2 })
	var body struct {
		Pools []map[string]any `json:"pools"`
	}
	if err := json.Unmarshal([]byte(h.cp.HeartbeatBodies()[0]), &body); err != nil {
		t.Fatalf("heartbeat body %q: %v", h.cp.HeartbeatBodies()[0], err)
	}
	want := map[string]any{"team_id": "", "template": "base", "vcpus": 1.0, "memory_mb": 512.0, "disk_mb": 5120.0,
		"allow_internet": true, "size": 2.0, "ready": 1.0, "hits": 4.0, "misses": 2.0}
	if len(body.Pools) != 1 || !reflect.DeepEqual(body.Pools[0], want) {
		t.Fatalf("heartbeat report %+v, want [%+v]", body.Pools, want)
	}
	mu.Lock()
	n := len(applied)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("pools applied from answers without pools: %d", n)
	}

	h.cp.SetPools([]map[string]any{{"team_id": "", "template": "minimal", "name": "minimal", "size": 3,
		"vcpus": 1, "memory_mb": 512, "disk_mb": 5120, "allow_internet": true}})
	waitFor(t, "pools applied", func() bool { mu.Lock(); defer mu.Unlock(); return len(applied) > 0 })
	mu.Lock()
	got := applied[0]
	mu.Unlock()
	wantPools := []enroll.DesiredPool{{Name: "minimal", Size: 3, PoolShape: enroll.PoolShape{
		Template: "minimal", VCPUs: 1, MemoryMB: 512, DiskMB: 5120, AllowInternet: true}}}
	if !reflect.DeepEqual(got, wantPools) {
		t.Fatalf("applied %+v, want %+v", got, wantPools)
	}

	// An empty list is applied too: the control plane wants no pools.
	h.cp.SetPools([]any{})
	waitFor(t, "no pools applied", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(applied[len(applied)-1]) == 0
	})
}
