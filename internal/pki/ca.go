// Package pki is the control plane's internal certificate authority: it creates the CA on first start,
// issues the host agents' server certificates and the control plane's client certificate, and builds
// the mutual-TLS configurations of both sides (docs/api.md).
package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// Lifetimes (docs/api.md). The CA outlives everything it signs; leaf certificates are short and renewed: an
// agent's on every credential refresh, the control plane's every ClientCertRenewInterval.
const (
	CATTL                   = 10 * 365 * 24 * time.Hour
	AgentCertTTL            = 7 * 24 * time.Hour
	ClientCertTTL           = 24 * time.Hour
	ClientCertRenewInterval = 12 * time.Hour

	// ClientCommonName is the subject CN of the control plane's client certificate; agents accept no
	// other client.
	ClientCommonName = "wrenn-cp"
	// CACommonName is the subject CN of a CA made by NewCA.
	CACommonName = "Wrenn internal CA"

	// backdate covers clock skew between the control plane and its agents.
	backdate = 5 * time.Minute

	pemCertificate = "CERTIFICATE"
	pemPKCS8Key    = "PRIVATE KEY"
	pemSEC1Key     = "EC PRIVATE KEY"
)

// CA is the internal certificate authority: an ECDSA P-256 key and its self-signed certificate.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	now     func() time.Time
}

// KeyPair is an issued certificate and its private key, PEM encoded.
type KeyPair struct {
	CertPEM  []byte
	KeyPEM   []byte
	NotAfter time.Time
}

// NewCA creates a new CA valid for CATTL.
func NewCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: CACommonName, Organization: []string{"Wrenn"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CATTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{cert: cert, certPEM: encodeCert(der), key: key, now: time.Now}, nil
}

// LoadCA loads a CA from its PEM certificate and key (PKCS #8 or SEC 1), checking that the certificate
// is a CA certificate and the key belongs to it.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("load CA: certificate is not a CA certificate")
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("load CA: private key does not match the certificate")
	}
	return &CA{cert: cert, certPEM: encodeCert(cert.Raw), key: key, now: time.Now}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns the CA certificate in PEM (what agents receive as ca_cert_pem).
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// KeyPEM returns the CA private key in PKCS #8 PEM, for storing.
func (ca *CA) KeyPEM() ([]byte, error) { return encodeKey(ca.key) }

// IssueAgent issues a host agent's server certificate: CN = hostID, SAN = the host part of address
// ("ip:port", "ip", or a DNS name with or without a port), valid for AgentCertTTL.
func (ca *CA) IssueAgent(hostID, address string) (KeyPair, error) {
	if !strings.HasPrefix(hostID, "host-") {
		return KeyPair{}, fmt.Errorf("issue agent certificate: host id %q lacks the host- prefix", hostID)
	}
	host, err := addressHost(address)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue agent certificate for %s: %w", hostID, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hostID},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	return ca.issue(tmpl, AgentCertTTL)
}

// IssueClient issues the control plane's client certificate: CN = ClientCommonName, valid for
// ClientCertTTL.
func (ca *CA) IssueClient() (KeyPair, error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: ClientCommonName},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ClientCertTTL)
}

// issue signs tmpl with a fresh P-256 key; the validity never exceeds the CA's.
func (ca *CA) issue(tmpl *x509.Certificate, ttl time.Duration) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("generate key: %w", err)
	}
	now := ca.now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(ttl)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	if !tmpl.NotAfter.After(now) {
		return KeyPair{}, fmt.Errorf("CA certificate expired at %s", ca.cert.NotAfter.Format(time.RFC3339))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("sign %s certificate: %w", tmpl.Subject.CommonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{CertPEM: encodeCert(der), KeyPEM: keyPEM, NotAfter: tmpl.NotAfter.UTC().Truncate(time.Second)}, nil
}

// addressHost returns the host part of an agent address.
func addressHost(address string) (string, error) {
	host := address
	if h, _, err := net.SplitHostPort(address); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || strings.ContainsAny(host, " /[]") {
		return "", fmt.Errorf("invalid agent address %q: want ip:port", address)
	}
	return host, nil
}

// Store keeps the CA in the database, shared by every control-plane process.
type Store interface {
	// LoadCA returns the stored CA, or ErrNoCA.
	LoadCA(ctx context.Context) (certPEM, keyPEM []byte, err error)
	// CreateCA stores the CA unless one already exists, and returns the stored one: certPEM/keyPEM when
	// they were stored, else the CA another process stored first.
	CreateCA(ctx context.Context, certPEM, keyPEM []byte) (storedCertPEM, storedKeyPEM []byte, err error)
}

// ErrNoCA is returned by Store.LoadCA when no CA has been stored yet.
var ErrNoCA = errors.New("no CA stored")

// LoadOrCreateCA returns the stored CA, creating and storing one on the very first start. Processes
// starting together agree on one CA through Store.CreateCA.
func LoadOrCreateCA(ctx context.Context, store Store) (*CA, error) {
	certPEM, keyPEM, err := store.LoadCA(ctx)
	if err == nil {
		return LoadCA(certPEM, keyPEM)
	}
	if !errors.Is(err, ErrNoCA) {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	ca, err := NewCA()
	if err != nil {
		return nil, err
	}
	newKey, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err = store.CreateCA(ctx, ca.CertPEM(), newKey)
	if err != nil {
		return nil, fmt.Errorf("store CA: %w", err)
	}
	return LoadCA(certPEM, keyPEM)
}

// ParseCertificatePEM parses the first CERTIFICATE block of b.
func ParseCertificatePEM(b []byte) (*x509.Certificate, error) {
	block, err := decodePEM(b, pemCertificate)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// ParseKeyPEM parses an ECDSA private key in PKCS #8 ("PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY") PEM.
func ParseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, err := decodePEM(b, pemPKCS8Key, pemSEC1Key)
	if err != nil {
		return nil, err
	}
	if block.Type == pemSEC1Key {
		key, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse EC private key: %w", err)
		}
		return key, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T, want ECDSA", k)
	}
	return key, nil
}

// decodePEM returns the first PEM block of b, which must have one of the types.
func decodePEM(b []byte, types ...string) (*pem.Block, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("no PEM block (want %s)", strings.Join(types, " or "))
	}
	for _, t := range types {
		if block.Type == t {
			return block, nil
		}
	}
	return nil, fmt.Errorf("PEM block is %q, want %s", block.Type, strings.Join(types, " or "))
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})
}

func encodeKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8Key, Bytes: der}), nil
}

// serial returns a random 128-bit positive serial number.
func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	b[0] &= 0x7f
	b[0] |= 0x01 // never zero
	return new(big.Int).SetBytes(b)
}
