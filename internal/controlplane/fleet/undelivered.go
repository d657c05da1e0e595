package fleet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"

	"github.com/wrenn/wrenn/internal/apierr"
)

// Undelivered reports whether err (from Agent, AgentOf or a call on their client) means the request
// never reached the agent: the host is not online, the connection was refused or could not be made,
// or the TLS handshake failed. Such a call changed nothing on the host and may be sent elsewhere or
// again; any other failure may have acted.
func Undelivered(err error) bool {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae.Code == apierr.CodeHostUnavailable
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var (
		verify   *tls.CertificateVerificationError
		hostname x509.HostnameError
		unknown  x509.UnknownAuthorityError
		header   tls.RecordHeaderError
	)
	return errors.As(err, &verify) || errors.As(err, &hostname) || errors.As(err, &unknown) || errors.As(err, &header)
}
