package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Certificate is a TLS certificate that can be replaced while connections use it: a renewed certificate
// (Set) is served from the next handshake on.
type Certificate struct {
	cur atomic.Pointer[tls.Certificate]
}

// NewCertificate returns a Certificate holding the PEM pair.
func NewCertificate(certPEM, keyPEM []byte) (*Certificate, error) {
	c := &Certificate{}
	if err := c.Set(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return c, nil
}

// Set replaces the certificate.
func (c *Certificate) Set(certPEM, keyPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load key pair: %w", err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
	}
	c.cur.Store(&pair)
	return nil
}

// Leaf returns the current certificate.
func (c *Certificate) Leaf() *x509.Certificate { return c.cur.Load().Leaf }

// NotAfter is when the current certificate expires.
func (c *Certificate) NotAfter() time.Time { return c.Leaf().NotAfter }

func (c *Certificate) get() *tls.Certificate { return c.cur.Load() }

// CertPool returns a pool of the certificates in caPEM.
func CertPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no CA certificate in PEM")
	}
	return pool, nil
}

// AgentTLSConfig is the host agent's server configuration: TLS 1.3, its certificate, and a client
// certificate required, signed by the CA (client-auth usage) and named ClientCommonName.
func AgentTLSConfig(cert *Certificate, caPEM []byte) (*tls.Config, error) {
	pool, err := CertPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("agent TLS config: %w", err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return cert.get(), nil
		},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  pool,
		// Chain and usage are verified by crypto/tls; only the control plane's identity is left.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			if cn := cs.PeerCertificates[0].Subject.CommonName; cn != ClientCommonName {
				return fmt.Errorf("client certificate is for %q, want %q", cn, ClientCommonName)
			}
			return nil
		},
	}, nil
}

// ControlPlaneTLSConfig is the control plane's client configuration for calling agents: TLS 1.3, its
// client certificate, and the agent's certificate verified against the CA and the dialled address (IP
// SAN). With hostID set, the agent's certificate must also be that host's (CN = hostID), so one agent
// cannot answer for another that had its address. ALPN is left to the HTTP layer: use it in an
// http.Transport with ForceAttemptHTTP2 (Connect over HTTP/2).
func ControlPlaneTLSConfig(cert *Certificate, caPEM []byte, hostID string) (*tls.Config, error) {
	pool, err := CertPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("control plane TLS config: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert.get(), nil
		},
	}
	if hostID != "" {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no agent certificate")
			}
			if cn := cs.PeerCertificates[0].Subject.CommonName; cn != hostID {
				return fmt.Errorf("agent certificate is for %q, want %q", cn, hostID)
			}
			return nil
		}
	}
	return cfg, nil
}
