package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	netmail "net/mail"
	"slices"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// TLSPolicy says how the SMTP connection is encrypted.
type TLSPolicy string

const (
	// TLSMandatory upgrades the connection with STARTTLS and fails when the server does not offer it
	// (default; port 587).
	TLSMandatory TLSPolicy = "starttls"
	// TLSOpportunistic uses STARTTLS when the server offers it, else continues unencrypted (port 587).
	TLSOpportunistic TLSPolicy = "opportunistic"
	// TLSImplicit connects with TLS from the first byte, "SMTPS" (port 465).
	TLSImplicit TLSPolicy = "tls"
	// TLSNone never encrypts (a relay on a trusted network; port 25).
	TLSNone TLSPolicy = "none"
)

// ParseTLSPolicy accepts starttls (also "" and "mandatory"), opportunistic, tls (also "implicit",
// "ssl") and none.
func ParseTLSPolicy(s string) (TLSPolicy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "starttls", "mandatory":
		return TLSMandatory, nil
	case "opportunistic":
		return TLSOpportunistic, nil
	case "tls", "implicit", "ssl", "smtps":
		return TLSImplicit, nil
	case "none", "plain", "notls":
		return TLSNone, nil
	default:
		return "", fmt.Errorf("unknown SMTP TLS policy %q: use starttls, opportunistic, tls or none", s)
	}
}

// DefaultSMTPTimeout bounds one delivery (connect, TLS, auth and transfer).
const DefaultSMTPTimeout = 30 * time.Second

// SMTPConfig configures SMTP delivery.
type SMTPConfig struct {
	Host string
	// Port; 0 = 465 for TLSImplicit, 25 for TLSNone, else 587.
	Port int
	// Username and Password enable SMTP AUTH (the strongest mechanism both sides support; PLAIN and LOGIN
	// only over an encrypted connection). Empty Username: no authentication.
	Username string
	Password string
	// From is the sender address, optionally with a display name ("Wrenn <noreply@example.com>").
	From string
	TLS  TLSPolicy // "" = TLSMandatory
	// TLSConfig overrides the TLS client settings (custom root CAs); nil = system roots, ServerName Host.
	TLSConfig *tls.Config
	Timeout   time.Duration // 0 = DefaultSMTPTimeout
}

// SMTP is a Mailer that delivers through an SMTP server, one connection per message.
type SMTP struct {
	host     string
	from     string
	implicit bool
	tls      *tls.Config
	opts     []gomail.Option
}

var _ Mailer = (*SMTP)(nil)

// NewSMTP checks cfg and returns an SMTP mailer. It does not connect.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	if strings.TrimSpace(cfg.Host) == "" {
		return nil, errors.New("smtp: host is required")
	}
	if cfg.From == "" {
		return nil, errors.New("smtp: from address is required")
	}
	if _, err := netmail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("smtp: invalid from address %q: %w", cfg.From, err)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("smtp: invalid port %d", cfg.Port)
	}
	policy, err := ParseTLSPolicy(string(cfg.TLS))
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSMTPTimeout
	}
	port := cfg.Port
	if port == 0 {
		switch policy {
		case TLSImplicit:
			port = 465
		case TLSNone:
			port = 25
		default:
			port = 587
		}
	}
	tlsConf := cfg.TLSConfig
	if tlsConf == nil {
		tlsConf = &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	}
	s := &SMTP{host: cfg.Host, from: cfg.From, implicit: policy == TLSImplicit, tls: tlsConf}
	s.opts = []gomail.Option{gomail.WithPort(port), gomail.WithTimeout(cfg.Timeout), gomail.WithTLSConfig(tlsConf)}
	switch policy {
	case TLSImplicit:
		// The dialer of Send does the TLS handshake; the client then sees a TLS connection (and, as
		// servers offer no STARTTLS over TLS, never tries to upgrade it).
		s.opts = append(s.opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case TLSOpportunistic:
		s.opts = append(s.opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case TLSNone:
		s.opts = append(s.opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		s.opts = append(s.opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if cfg.Username != "" {
		s.opts = append(s.opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	if _, err := gomail.NewClient(cfg.Host, s.opts...); err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	return s, nil
}

// Send delivers m: a plain-text UTF-8 message with Date and Message-ID headers.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	if err := msg.From(s.from); err != nil {
		return fmt.Errorf("mail from %q: %w", s.from, err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("mail to %q: %w", m.To, err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)

	// go-mail leaves the connection open when the greeting, STARTTLS or AUTH fails: keep hold of it and
	// close it once the delivery is over.
	var conn net.Conn
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var (
			c   net.Conn
			err error
		)
		if s.implicit {
			c, err = (&tls.Dialer{Config: s.tls}).DialContext(ctx, network, addr)
		} else {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		conn = c
		return c, err
	}
	client, err := gomail.NewClient(s.host, append(slices.Clone(s.opts), gomail.WithDialContextFunc(dial))...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	err = client.DialAndSendWithContext(ctx, msg)
	if conn != nil {
		_ = conn.Close() // already closed after a successful QUIT
	}
	if err != nil {
		return fmt.Errorf("send mail to %s: %w", m.To, err)
	}
	return nil
}
