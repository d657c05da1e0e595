package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA()
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func keyPEM(t *testing.T, ca *CA) []byte {
	t.Helper()
	k, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewCA(t *testing.T) {
	ca := newCA(t)
	c := ca.Certificate()
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Fatalf("not a CA: %+v", c)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 || c.Subject.CommonName != CACommonName {
		t.Fatalf("usage %v, subject %v", c.KeyUsage, c.Subject)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve.Params().Name != "P-256" {
		t.Fatalf("key %T", c.PublicKey)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < CATTL || d > CATTL+backdate+time.Minute {
		t.Fatalf("validity %v", d)
	}
	if time.Until(c.NotAfter) < 9*365*24*time.Hour {
		t.Fatalf("NotAfter %v", c.NotAfter)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	if newCA(t).Certificate().SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Fatal("serials repeat")
	}
}

func TestLoadCARoundTrip(t *testing.T) {
	ca := newCA(t)
	loaded, err := LoadCA(ca.CertPEM(), keyPEM(t, ca))
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Certificate().Equal(ca.Certificate()) || !bytes.Equal(loaded.CertPEM(), ca.CertPEM()) {
		t.Fatal("certificate changed")
	}
	// A certificate issued by the loaded CA verifies against the original.
	kp, err := loaded.IssueClient()
	if err != nil {
		t.Fatal(err)
	}
	verifyChain(t, ca, kp, x509.ExtKeyUsageClientAuth)

	// SEC 1 keys load too.
	sec1, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})); err != nil {
		t.Fatalf("SEC 1 key: %v", err)
	}
	// CertPEM returns a copy.
	p := ca.CertPEM()
	p[0] = 'X'
	if ca.CertPEM()[0] == 'X' {
		t.Fatal("CertPEM exposes internal state")
	}
}

func TestLoadCAErrors(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	leaf, err := ca.IssueClient()
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		message string
	}{
		{"garbage certificate", []byte("nope"), keyPEM(t, ca), "no PEM block"},
		{"key as certificate", keyPEM(t, ca), keyPEM(t, ca), `PEM block is "PRIVATE KEY", want CERTIFICATE`},
		{"corrupt certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), keyPEM(t, ca), "parse certificate"},
		{"leaf as CA", leaf.CertPEM, leaf.KeyPEM, "not a CA certificate"},
		{"garbage key", ca.CertPEM(), []byte("nope"), "no PEM block"},
		{"certificate as key", ca.CertPEM(), ca.CertPEM(), `PEM block is "CERTIFICATE"`},
		{"corrupt PKCS8 key", ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), "parse private key"},
		{"corrupt SEC1 key", ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), "parse EC private key"},
		{"ed25519 key", ca.CertPEM(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}), "want ECDSA"},
		{"key of another CA", ca.CertPEM(), keyPEM(t, other), "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCA(tt.cert, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err = %v, want %q", err, tt.message)
			}
		})
	}
}

// verifyChain checks that kp chains to ca for usage.
func verifyChain(t *testing.T, ca *CA, kp KeyPair, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	cert, err := ParseCertificatePEM(kp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := CertPool(ca.CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	key, err := ParseKeyPEM(kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Fatal("key does not match certificate")
	}
	return cert
}

func TestIssueAgent(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name    string
		address string
		ip      string
		dns     string
	}{
		{"ip:port", "10.1.2.3:7443", "10.1.2.3", ""},
		{"bare ip", "127.0.0.1", "127.0.0.1", ""},
		{"ipv6 with port", "[::1]:7443", "::1", ""},
		{"bare ipv6", "fd00::5", "fd00::5", ""},
		{"dns with port", "agent-1.internal:7443", "", "agent-1.internal"},
		{"dns", "agent-1.internal", "", "agent-1.internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.IssueAgent("host-abc", tt.address)
			if err != nil {
				t.Fatal(err)
			}
			cert := verifyChain(t, ca, kp, x509.ExtKeyUsageServerAuth)
			if cert.Subject.CommonName != "host-abc" {
				t.Fatalf("CN %q", cert.Subject.CommonName)
			}
			if tt.ip != "" && (len(cert.IPAddresses) != 1 || !cert.IPAddresses[0].Equal(net.ParseIP(tt.ip)) || len(cert.DNSNames) != 0) {
				t.Fatalf("SANs %v %v", cert.IPAddresses, cert.DNSNames)
			}
			if tt.dns != "" && (len(cert.DNSNames) != 1 || cert.DNSNames[0] != tt.dns || len(cert.IPAddresses) != 0) {
				t.Fatalf("SANs %v %v", cert.IPAddresses, cert.DNSNames)
			}
			if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || cert.IsCA {
				t.Fatalf("usage %v, CA %v", cert.ExtKeyUsage, cert.IsCA)
			}
			if d := cert.NotAfter.Sub(cert.NotBefore); d != AgentCertTTL+backdate {
				t.Fatalf("validity %v", d)
			}
			if !kp.NotAfter.Equal(cert.NotAfter) {
				t.Fatalf("KeyPair.NotAfter %v, cert %v", kp.NotAfter, cert.NotAfter)
			}
			// Not usable as a client certificate.
			pool, _ := CertPool(ca.CertPEM())
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
				t.Fatal("agent certificate verifies for client auth")
			}
		})
	}
}

func TestIssueAgentErrors(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		name, hostID, address string
	}{
		{"no host prefix", "usr-1", "127.0.0.1:1"},
		{"empty host id", "", "127.0.0.1:1"},
		{"empty address", "host-1", ""},
		{"port only", "host-1", ":7443"},
		{"space", "host-1", "a b:1"},
		{"url", "host-1", "https://10.0.0.1:1/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ca.IssueAgent(tt.hostID, tt.address); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestIssueClient(t *testing.T) {
	ca := newCA(t)
	kp, err := ca.IssueClient()
	if err != nil {
		t.Fatal(err)
	}
	cert := verifyChain(t, ca, kp, x509.ExtKeyUsageClientAuth)
	if cert.Subject.CommonName != ClientCommonName || len(cert.IPAddresses)+len(cert.DNSNames) != 0 {
		t.Fatalf("subject %v, SANs %v %v", cert.Subject, cert.IPAddresses, cert.DNSNames)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d != ClientCertTTL+backdate {
		t.Fatalf("validity %v", d)
	}
	if ClientCertRenewInterval >= ClientCertTTL {
		t.Fatal("renewal interval does not leave overlap")
	}
}

func TestIssueClampedToCA(t *testing.T) {
	ca := newCA(t)
	ca.now = func() time.Time { return ca.cert.NotAfter.Add(-time.Hour) }
	kp, err := ca.IssueAgent("host-1", "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if !kp.NotAfter.Equal(ca.cert.NotAfter.UTC().Truncate(time.Second)) {
		t.Fatalf("NotAfter %v, CA %v", kp.NotAfter, ca.cert.NotAfter)
	}
	ca.now = func() time.Time { return ca.cert.NotAfter.Add(time.Second) }
	if _, err := ca.IssueClient(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("issue after CA expiry: %v", err)
	}
}

// memStore is a Store in memory; winner, when set, is what a concurrent process stored first.
type memStore struct {
	cert, key       []byte
	winner          *CA
	loadErr, putErr error
	creates         int
}

func (s *memStore) LoadCA(context.Context) ([]byte, []byte, error) {
	if s.loadErr != nil {
		return nil, nil, s.loadErr
	}
	if s.cert == nil {
		return nil, nil, ErrNoCA
	}
	return s.cert, s.key, nil
}

func (s *memStore) CreateCA(_ context.Context, cert, key []byte) ([]byte, []byte, error) {
	s.creates++
	if s.putErr != nil {
		return nil, nil, s.putErr
	}
	if s.winner != nil {
		k, err := s.winner.KeyPEM()
		if err != nil {
			return nil, nil, err
		}
		s.cert, s.key = s.winner.CertPEM(), k
	} else if s.cert == nil {
		s.cert, s.key = cert, key
	}
	return s.cert, s.key, nil
}

func TestLoadOrCreateCA(t *testing.T) {
	ctx := context.Background()

	t.Run("first start creates", func(t *testing.T) {
		s := &memStore{}
		ca, err := LoadOrCreateCA(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if s.creates != 1 || !bytes.Equal(s.cert, ca.CertPEM()) {
			t.Fatalf("creates %d", s.creates)
		}
		again, err := LoadOrCreateCA(ctx, s)
		if err != nil || s.creates != 1 || !again.Certificate().Equal(ca.Certificate()) {
			t.Fatalf("second start: %v, creates %d", err, s.creates)
		}
	})
	t.Run("concurrent start adopts the stored CA", func(t *testing.T) {
		winner := newCA(t)
		s := &memStore{winner: winner}
		ca, err := LoadOrCreateCA(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if !ca.Certificate().Equal(winner.Certificate()) {
			t.Fatal("did not adopt the winner's CA")
		}
	})

	loadErr := errors.New("db down")
	tests := []struct {
		name  string
		store *memStore
	}{
		{"load fails", &memStore{loadErr: loadErr}},
		{"store fails", &memStore{putErr: loadErr}},
		{"stored CA is corrupt", &memStore{cert: []byte("junk"), key: []byte("junk")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadOrCreateCA(ctx, tt.store); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestParseCertificatePEMAndCertPool(t *testing.T) {
	if _, err := CertPool([]byte("x")); err == nil {
		t.Fatal("CertPool accepted junk")
	}
	if _, err := CertPool(nil); err == nil {
		t.Fatal("CertPool accepted nothing")
	}
	if _, err := ParseCertificatePEM(nil); err == nil {
		t.Fatal("ParseCertificatePEM accepted nothing")
	}
	if _, err := ParseKeyPEM(nil); err == nil {
		t.Fatal("ParseKeyPEM accepted nothing")
	}
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }
