package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// testPKI is one CA with an agent certificate for 127.0.0.1 and a control-plane client certificate.
type testPKI struct {
	ca              *CA
	agent, client   KeyPair
	agentC, clientC *Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{ca: newCA(t)}
	var err error
	if p.agent, err = p.ca.IssueAgent("host-a", "127.0.0.1:7443"); err != nil {
		t.Fatal(err)
	}
	if p.client, err = p.ca.IssueClient(); err != nil {
		t.Fatal(err)
	}
	p.agentC = mustCert(t, p.agent)
	p.clientC = mustCert(t, p.client)
	return p
}

func mustCert(t *testing.T, kp KeyPair) *Certificate {
	t.Helper()
	c, err := NewCertificate(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake runs one TLS connection over loopback TCP between an agent server and a control-plane client
// and returns the error of each side (nil, nil = both sides completed and exchanged a message).
func handshake(t *testing.T, server, client *tls.Config) (state tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := c.(*tls.Conn).Handshake(); err != nil {
			done <- err
			return
		}
		_, err = c.Write([]byte("ok"))
		done <- err
	}()

	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(&d, "tcp", ln.Addr().String(), client)
	if err == nil {
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		// In TLS 1.3 the server checks the client certificate after the client finished; its verdict
		// arrives with the first read.
		buf := make([]byte, 2)
		if _, err = io.ReadFull(conn, buf); err == nil && string(buf) != "ok" {
			err = errors.New("unexpected reply")
		}
		state = conn.ConnectionState()
		conn.Close()
	}
	return state, <-done, err
}

func agentConfig(t *testing.T, cert *Certificate, ca *CA) *tls.Config {
	t.Helper()
	cfg, err := AgentTLSConfig(cert, ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func cpConfig(t *testing.T, cert *Certificate, ca *CA, hostID string) *tls.Config {
	t.Helper()
	cfg, err := ControlPlaneTLSConfig(cert, ca.CertPEM(), hostID)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMutualTLS(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := newPKI(t)
	state, serverErr, clientErr := handshake(t, agentConfig(t, p.agentC, p.ca), cpConfig(t, p.clientC, p.ca, "host-a"))
	if serverErr != nil || clientErr != nil {
		t.Fatalf("server: %v, client: %v", serverErr, clientErr)
	}
	if state.Version != tls.VersionTLS13 {
		t.Fatalf("version %x", state.Version)
	}
	if cn := state.PeerCertificates[0].Subject.CommonName; cn != "host-a" {
		t.Fatalf("peer %q", cn)
	}
	// Without a host id the client trusts any agent of the CA at the dialled address.
	if _, serverErr, clientErr := handshake(t, agentConfig(t, p.agentC, p.ca), cpConfig(t, p.clientC, p.ca, "")); serverErr != nil || clientErr != nil {
		t.Fatalf("server: %v, client: %v", serverErr, clientErr)
	}
}

func TestMutualTLSFailures(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := newPKI(t)
	foreign := newPKI(t) // same names, another CA

	wrongIP, err := p.ca.IssueAgent("host-a", "127.0.0.2:7443")
	if err != nil {
		t.Fatal(err)
	}
	dnsOnly, err := p.ca.IssueAgent("host-a", "agent.internal:7443")
	if err != nil {
		t.Fatal(err)
	}
	otherHost, err := p.ca.IssueAgent("host-b", "127.0.0.1:7443")
	if err != nil {
		t.Fatal(err)
	}
	// A client-auth certificate with another name than wrenn-cp.
	p.ca.now = time.Now
	impostor, err := p.ca.issue(&x509.Certificate{
		Subject:     pkixName("intruder"),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A client-auth-only certificate that otherwise looks like host-a's.
	clientUsage, err := p.ca.issue(&x509.Certificate{
		Subject:     pkixName("host-a"),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Certificates that expired an hour ago.
	old := *p.ca
	old.now = func() time.Time { return time.Now().Add(-AgentCertTTL - time.Hour) }
	expiredAgent, err := old.IssueAgent("host-a", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	old.now = func() time.Time { return time.Now().Add(-ClientCertTTL - time.Hour) }
	expiredClient, err := old.IssueClient()
	if err != nil {
		t.Fatal(err)
	}

	noClientCert := cpConfig(t, p.clientC, p.ca, "host-a")
	noClientCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &tls.Certificate{}, nil
	}
	tls12 := cpConfig(t, p.clientC, p.ca, "host-a")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		side   string // which side rejects: "server" or "client"
		want   string // substring of that side's error
	}{
		{"client certificate from another CA", agentConfig(t, p.agentC, p.ca), cpConfig(t, foreign.clientC, p.ca, "host-a"), "server", "unknown authority"},
		{"agent certificate from another CA", agentConfig(t, foreign.agentC, p.ca), cpConfig(t, p.clientC, p.ca, "host-a"), "client", "unknown authority"},
		{"agent trusts another CA", agentConfig(t, p.agentC, foreign.ca), cpConfig(t, p.clientC, p.ca, "host-a"), "server", "unknown authority"},
		{"no client certificate", agentConfig(t, p.agentC, p.ca), noClientCert, "server", "didn't provide a certificate"},
		{"agent certificate as client certificate", agentConfig(t, p.agentC, p.ca), cpConfig(t, mustCert(t, otherHost), p.ca, "host-a"), "server", "incompatible key usage"},
		{"client certificate as server certificate", agentConfig(t, mustCert(t, clientUsage), p.ca), cpConfig(t, p.clientC, p.ca, "host-a"), "client", "incompatible key usage"},
		{"client certificate with another name", agentConfig(t, p.agentC, p.ca), cpConfig(t, mustCert(t, impostor), p.ca, "host-a"), "server", `want "wrenn-cp"`},
		{"agent certificate for another address", agentConfig(t, mustCert(t, wrongIP), p.ca), cpConfig(t, p.clientC, p.ca, "host-a"), "client", "127.0.0.1"},
		{"agent certificate without the IP", agentConfig(t, mustCert(t, dnsOnly), p.ca), cpConfig(t, p.clientC, p.ca, "host-a"), "client", "127.0.0.1"},
		{"agent certificate of another host", agentConfig(t, mustCert(t, otherHost), p.ca), cpConfig(t, p.clientC, p.ca, "host-a"), "client", `want "host-a"`},
		{"expired agent certificate", agentConfig(t, mustCert(t, expiredAgent), p.ca), cpConfig(t, p.clientC, p.ca, "host-a"), "client", "expired"},
		{"expired client certificate", agentConfig(t, p.agentC, p.ca), cpConfig(t, mustCert(t, expiredClient), p.ca, "host-a"), "server", "expired"},
		{"TLS 1.2 client", agentConfig(t, p.agentC, p.ca), tls12, "server", "unsupported versions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, serverErr, clientErr := handshake(t, tt.server, tt.client)
			if serverErr == nil || clientErr == nil {
				t.Fatalf("connection succeeded: server %v, client %v", serverErr, clientErr)
			}
			got := serverErr
			if tt.side == "client" {
				got = clientErr
			}
			if !strings.Contains(got.Error(), tt.want) {
				t.Fatalf("%s error %q, want %q (other side: server %v / client %v)", tt.side, got, tt.want, serverErr, clientErr)
			}
		})
	}
}

func TestCertificateRotation(t *testing.T) {
	defer goleak.VerifyNone(t)
	p := newPKI(t)
	server := agentConfig(t, p.agentC, p.ca)
	client := cpConfig(t, p.clientC, p.ca, "host-a")
	before, serverErr, clientErr := handshake(t, server, client)
	if serverErr != nil || clientErr != nil {
		t.Fatalf("server: %v, client: %v", serverErr, clientErr)
	}

	renewed, err := p.ca.IssueAgent("host-a", "127.0.0.1:7443")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.agentC.Set(renewed.CertPEM, renewed.KeyPEM); err != nil {
		t.Fatal(err)
	}
	newClient, err := p.ca.IssueClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.clientC.Set(newClient.CertPEM, newClient.KeyPEM); err != nil {
		t.Fatal(err)
	}
	after, serverErr, clientErr := handshake(t, server, client)
	if serverErr != nil || clientErr != nil {
		t.Fatalf("server: %v, client: %v", serverErr, clientErr)
	}
	if after.PeerCertificates[0].SerialNumber.Cmp(before.PeerCertificates[0].SerialNumber) == 0 {
		t.Fatal("old certificate still served")
	}
	if !p.agentC.NotAfter().Equal(renewed.NotAfter) || p.agentC.Leaf().SerialNumber.Cmp(after.PeerCertificates[0].SerialNumber) != 0 {
		t.Fatal("Leaf/NotAfter do not describe the served certificate")
	}
}

func TestCertificateErrors(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name      string
		cert, key []byte
	}{
		{"junk", []byte("x"), []byte("y")},
		{"mismatched key", p.agent.CertPEM, p.client.KeyPEM},
		{"missing key", p.agent.CertPEM, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCertificate(tt.cert, tt.key); err == nil {
				t.Fatal("accepted")
			}
			c := mustCert(t, p.agent)
			if err := c.Set(tt.cert, tt.key); err == nil {
				t.Fatal("Set accepted")
			}
			if c.Leaf().Subject.CommonName != "host-a" {
				t.Fatal("failed Set replaced the certificate")
			}
		})
	}
	if _, err := AgentTLSConfig(p.agentC, []byte("junk")); err == nil {
		t.Fatal("AgentTLSConfig accepted a junk CA")
	}
	if _, err := ControlPlaneTLSConfig(p.clientC, nil, ""); err == nil {
		t.Fatal("ControlPlaneTLSConfig accepted no CA")
	}
}
