package mail_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/controlplane/mail"
)

// smtpServer is a minimal SMTP server on loopback speaking the real protocol (EHLO, STARTTLS, AUTH
// PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and recording what it received.
type smtpServer struct {
	t        *testing.T
	ln       net.Listener
	cert     tls.Certificate
	startTLS bool   // advertise and accept STARTTLS
	implicit bool   // the listener speaks TLS from the first byte
	user     string // non-empty: advertise AUTH PLAIN and require these credentials
	pass     string
	rejectTo string // RCPT TO this address → 550

	wg    sync.WaitGroup
	mu    sync.Mutex
	mails []received
	auths []string // user names that tried AUTH
}

type received struct {
	From   string
	To     []string
	Data   []byte
	TLS    bool
	Authed string
}

type serverOpt func(*smtpServer)

func withStartTLS(s *smtpServer)    { s.startTLS = true }
func withImplicitTLS(s *smtpServer) { s.implicit = true }
func withAuth(user, pass string) serverOpt {
	return func(s *smtpServer) { s.user, s.pass = user, pass }
}
func rejecting(addr string) serverOpt { return func(s *smtpServer) { s.rejectTo = addr } }

func startServer(t *testing.T, opts ...serverOpt) *smtpServer {
	t.Helper()
	s := &smtpServer{t: t, cert: selfSigned(t)}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.implicit {
		ln = tls.NewListener(ln, s.tlsConfig())
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *smtpServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *smtpServer) tlsConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}
}

// clientTLS trusts the server's certificate for 127.0.0.1.
func (s *smtpServer) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.cert.Leaf)
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func (s *smtpServer) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mails)
}

func (s *smtpServer) authAttempts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.auths)
}

func (s *smtpServer) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			s.session(c)
		}()
	}
}

// session runs one SMTP conversation on c.
func (s *smtpServer) session(c net.Conn) {
	_, isTLS := c.(*tls.Conn)
	tp := textproto.NewConn(c)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			if err := tp.PrintfLine("%s", l); err != nil {
				return false
			}
		}
		return true
	}
	var (
		authed string
		cur    *received
	)
	if !reply("220 127.0.0.1 ESMTP wrenn-test") {
		return
	}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			lines := []string{"250-127.0.0.1 greets you", "250-8BITMIME", "250-SMTPUTF8"}
			if s.startTLS && !isTLS {
				lines = append(lines, "250-STARTTLS")
			}
			if s.user != "" {
				lines = append(lines, "250-AUTH PLAIN")
			}
			lines = append(lines, "250 SIZE 10485760")
			if !reply(lines...) {
				return
			}
		case "HELO":
			reply("250 127.0.0.1")
		case "STARTTLS":
			if !s.startTLS || isTLS {
				reply("502 5.5.1 STARTTLS not available")
				continue
			}
			if !reply("220 2.0.0 ready to start TLS") {
				return
			}
			tc := tls.Server(c, s.tlsConfig())
			if err := tc.Handshake(); err != nil {
				return
			}
			c, isTLS, tp = tc, true, textproto.NewConn(tc)
			authed, cur = "", nil
		case "AUTH":
			mech, initial, _ := strings.Cut(arg, " ")
			if s.user == "" || !strings.EqualFold(mech, "PLAIN") {
				reply("504 5.5.4 mechanism not supported")
				continue
			}
			if initial == "" {
				if !reply("334 ") {
					return
				}
				if initial, err = tp.ReadLine(); err != nil {
					return
				}
			}
			raw, err := base64.StdEncoding.DecodeString(initial)
			parts := strings.Split(string(raw), "\x00")
			if err != nil || len(parts) != 3 {
				reply("501 5.5.2 malformed PLAIN response")
				continue
			}
			s.mu.Lock()
			s.auths = append(s.auths, parts[1])
			s.mu.Unlock()
			if parts[1] != s.user || parts[2] != s.pass {
				reply("535 5.7.8 authentication credentials invalid")
				continue
			}
			authed = parts[1]
			reply("235 2.7.0 authentication successful")
		case "MAIL":
			if s.user != "" && authed == "" {
				reply("530 5.7.0 authentication required")
				continue
			}
			cur = &received{From: addrOf(arg), TLS: isTLS, Authed: authed}
			reply("250 2.1.0 ok")
		case "RCPT":
			if cur == nil {
				reply("503 5.5.1 need MAIL first")
				continue
			}
			to := addrOf(arg)
			if to == s.rejectTo {
				reply("550 5.1.1 no such user")
				continue
			}
			cur.To = append(cur.To, to)
			reply("250 2.1.5 ok")
		case "DATA":
			if cur == nil || len(cur.To) == 0 {
				reply("503 5.5.1 need RCPT first")
				continue
			}
			if !reply("354 end data with <CR><LF>.<CR><LF>") {
				return
			}
			data, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			cur.Data = data
			s.mu.Lock()
			s.mails = append(s.mails, *cur)
			s.mu.Unlock()
			cur = nil
			reply("250 2.0.0 queued")
		case "RSET":
			cur = nil
			reply("250 2.0.0 ok")
		case "NOOP":
			reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		default:
			reply("502 5.5.2 command not recognized")
		}
	}
}

// addrOf extracts the address of "FROM:<a@b> PARAMS" / "TO:<a@b>".
func addrOf(arg string) string {
	_, rest, _ := strings.Cut(arg, "<")
	addr, _, _ := strings.Cut(rest, ">")
	return addr
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "wrenn-test-smtp"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// body parses a received message and returns its headers and decoded text body.
func body(t *testing.T, data []byte) (netmail.Header, string) {
	t.Helper()
	msg, err := netmail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("parse message: %v\n%s", err, data)
	}
	var r io.Reader = msg.Body
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, r)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode body: %v", err)
	}
	return msg.Header, string(b)
}

const link = "https://dash.example.test/activate?token=0123456789abcdef0123456789abcdef"

func testMessage() mail.Message {
	return mail.Message{
		To:      "bob@example.test",
		Subject: "Activate your Wrenn account",
		Text:    "Hello Bob,\n\nactivate your account (valid 30 minutes):\n\n" + link + "\n\nThanks — Wrenn\n",
	}
}

func send(t *testing.T, cfg mail.SMTPConfig, m mail.Message) error {
	t.Helper()
	s, err := mail.NewSMTP(cfg)
	if err != nil {
		t.Fatalf("NewSMTP: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Send(ctx, m)
}

func TestSMTPStartTLSWithAuth(t *testing.T) {
	srv := startServer(t, withStartTLS, withAuth("mailer", "s3cret"))
	err := send(t, mail.SMTPConfig{
		Host: "127.0.0.1", Port: srv.port(), Username: "mailer", Password: "s3cret",
		From: "Wrenn <noreply@wrenn.test>", TLS: mail.TLSMandatory, TLSConfig: srv.clientTLS(),
	}, testMessage())
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.received()
	if len(got) != 1 {
		t.Fatalf("server received %d messages, want 1", len(got))
	}
	m := got[0]
	if m.From != "noreply@wrenn.test" || !slices.Equal(m.To, []string{"bob@example.test"}) {
		t.Errorf("envelope from %q to %v", m.From, m.To)
	}
	if !m.TLS || m.Authed != "mailer" {
		t.Errorf("message sent with TLS=%v authed=%q, want TLS and mailer", m.TLS, m.Authed)
	}
	h, text := body(t, m.Data)
	if h.Get("Subject") != "Activate your Wrenn account" {
		t.Errorf("Subject = %q", h.Get("Subject"))
	}
	if from, _ := netmail.ParseAddress(h.Get("From")); from == nil || from.Address != "noreply@wrenn.test" || from.Name != "Wrenn" {
		t.Errorf("From header = %q", h.Get("From"))
	}
	if h.Get("To") != "<bob@example.test>" && h.Get("To") != "bob@example.test" {
		t.Errorf("To header = %q", h.Get("To"))
	}
	if h.Get("Date") == "" || h.Get("Message-Id") == "" {
		t.Errorf("missing Date or Message-ID: %v", h)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("Content-Type = %q", h.Get("Content-Type"))
	}
	if !strings.Contains(text, link) || !strings.Contains(text, "Thanks — Wrenn") {
		t.Errorf("body does not carry the link and UTF-8 text:\n%s", text)
	}
}

func TestSMTPImplicitTLS(t *testing.T) {
	srv := startServer(t, withImplicitTLS)
	err := send(t, mail.SMTPConfig{
		Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test", TLS: mail.TLSImplicit,
		TLSConfig: srv.clientTLS(),
	}, testMessage())
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := srv.received(); len(got) != 1 || !got[0].TLS {
		t.Fatalf("received %+v, want one message over TLS", got)
	}
}

func TestSMTPImplicitTLSWithAuth(t *testing.T) {
	srv := startServer(t, withImplicitTLS, withAuth("mailer", "s3cret"))
	err := send(t, mail.SMTPConfig{
		Host: "127.0.0.1", Port: srv.port(), Username: "mailer", Password: "s3cret",
		From: "noreply@wrenn.test", TLS: mail.TLSImplicit, TLSConfig: srv.clientTLS(),
	}, testMessage())
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := srv.received(); len(got) != 1 || !got[0].TLS || got[0].Authed != "mailer" {
		t.Fatalf("received %+v, want one authenticated message over TLS", got)
	}
}

// A failed delivery closes its connection at once (the server's session ends well before its 10 s
// deadline).
func TestSMTPFailureClosesConnection(t *testing.T) {
	srv := startServer(t)
	start := time.Now()
	if err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test",
		TLS: mail.TLSMandatory, TLSConfig: srv.clientTLS()}, testMessage()); err == nil {
		t.Fatal("Send succeeded without STARTTLS")
	}
	_ = srv.ln.Close()
	srv.wg.Wait()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("server session lasted %v after the failed delivery", d)
	}
}

func TestSMTPNoTLSNeverUpgrades(t *testing.T) {
	srv := startServer(t, withStartTLS)
	err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test", TLS: mail.TLSNone},
		testMessage())
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := srv.received(); len(got) != 1 || got[0].TLS {
		t.Fatalf("received %+v, want one message in clear text", got)
	}
}

func TestSMTPOpportunisticUsesSTARTTLSWhenOffered(t *testing.T) {
	srv := startServer(t, withStartTLS)
	err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test",
		TLS: mail.TLSOpportunistic, TLSConfig: srv.clientTLS()}, testMessage())
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := srv.received(); len(got) != 1 || !got[0].TLS {
		t.Fatalf("received %+v, want one message over STARTTLS", got)
	}
}

func TestSMTPMandatoryTLSRefusesServerWithoutSTARTTLS(t *testing.T) {
	srv := startServer(t)
	err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test",
		TLS: mail.TLSMandatory, TLSConfig: srv.clientTLS()}, testMessage())
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("Send = %v, want a STARTTLS error", err)
	}
	if got := srv.received(); len(got) != 0 {
		t.Fatalf("server received %d messages", len(got))
	}
}

func TestSMTPUntrustedCertificateFails(t *testing.T) {
	srv := startServer(t, withStartTLS)
	// System roots do not trust the test certificate.
	err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test"}, testMessage())
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) && !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Send = %v, want a certificate verification error", err)
	}
	if got := srv.received(); len(got) != 0 {
		t.Fatalf("server received %d messages", len(got))
	}
}

func TestSMTPNoPasswordOverClearText(t *testing.T) {
	srv := startServer(t, withAuth("mailer", "s3cret"))
	err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), Username: "mailer", Password: "s3cret",
		From: "noreply@wrenn.test", TLS: mail.TLSOpportunistic}, testMessage())
	if err == nil {
		t.Fatal("Send succeeded with PLAIN authentication over a clear-text connection")
	}
	if a := srv.authAttempts(); len(a) != 0 {
		t.Fatalf("credentials were sent in clear text: %v", a)
	}
}

func TestSMTPWrongPassword(t *testing.T) {
	srv := startServer(t, withStartTLS, withAuth("mailer", "s3cret"))
	err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), Username: "mailer", Password: "nope",
		From: "noreply@wrenn.test", TLSConfig: srv.clientTLS()}, testMessage())
	if err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("Send = %v, want the server's 535", err)
	}
	if got := srv.received(); len(got) != 0 {
		t.Fatalf("server received %d messages", len(got))
	}
}

func TestSMTPRecipientRejected(t *testing.T) {
	srv := startServer(t, rejecting("bob@example.test"))
	err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test", TLS: mail.TLSNone},
		testMessage())
	if err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("Send = %v, want the server's 550", err)
	}
	if got := srv.received(); len(got) != 0 {
		t.Fatalf("server received %d messages", len(got))
	}
}

func TestSMTPServerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: port, From: "noreply@wrenn.test", TLS: mail.TLSNone,
		Timeout: 2 * time.Second}, testMessage()); err == nil {
		t.Fatal("Send to a closed port succeeded")
	}
}

func TestSMTPCancelledContext(t *testing.T) {
	srv := startServer(t)
	s, err := mail.NewSMTP(mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test", TLS: mail.TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Send(ctx, testMessage()); err == nil {
		t.Fatal("Send with a cancelled context succeeded")
	}
}

func TestSMTPBadRecipient(t *testing.T) {
	srv := startServer(t)
	m := testMessage()
	m.To = "not an address"
	if err := send(t, mail.SMTPConfig{Host: "127.0.0.1", Port: srv.port(), From: "noreply@wrenn.test", TLS: mail.TLSNone}, m); err == nil {
		t.Fatal("Send to a malformed address succeeded")
	}
}

func TestNewSMTPValidation(t *testing.T) {
	for name, cfg := range map[string]mail.SMTPConfig{
		"no host":    {From: "a@b.test"},
		"no from":    {Host: "smtp.example.test"},
		"bad from":   {Host: "smtp.example.test", From: "not an address"},
		"bad port":   {Host: "smtp.example.test", From: "a@b.test", Port: 70000},
		"bad policy": {Host: "smtp.example.test", From: "a@b.test", TLS: "sometimes"},
	} {
		if _, err := mail.NewSMTP(cfg); err == nil {
			t.Errorf("%s: NewSMTP accepted %+v", name, cfg)
		}
	}
	if _, err := mail.NewSMTP(mail.SMTPConfig{Host: "smtp.example.test", From: "Wrenn <a@b.test>"}); err != nil {
		t.Errorf("NewSMTP with defaults: %v", err)
	}
}

func TestParseTLSPolicy(t *testing.T) {
	for in, want := range map[string]mail.TLSPolicy{
		"": mail.TLSMandatory, "starttls": mail.TLSMandatory, "Mandatory": mail.TLSMandatory,
		"opportunistic": mail.TLSOpportunistic, "tls": mail.TLSImplicit, "ssl": mail.TLSImplicit,
		"implicit": mail.TLSImplicit, "none": mail.TLSNone,
	} {
		got, err := mail.ParseTLSPolicy(in)
		if err != nil || got != want {
			t.Errorf("ParseTLSPolicy(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := mail.ParseTLSPolicy("maybe"); err == nil {
		t.Error("ParseTLSPolicy accepted \"maybe\"")
	}
}

func TestLogMailerLogsLink(t *testing.T) {
	var buf bytes.Buffer
	l := mail.NewLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	if err := l.Send(context.Background(), testMessage()); err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Msg     string   `json:"msg"`
		To      string   `json:"to"`
		Subject string   `json:"subject"`
		Links   []string `json:"links"`
		Text    string   `json:"text"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("decode log %s: %v", buf.Bytes(), err)
	}
	if rec.To != "bob@example.test" || rec.Subject != "Activate your Wrenn account" ||
		!slices.Equal(rec.Links, []string{link}) || !strings.Contains(rec.Text, link) {
		t.Fatalf("log record %+v", rec)
	}
}

func TestLinks(t *testing.T) {
	got := mail.Links("open (https://a.test/x?y=1), or http://b.test/z. not ftp://c.test")
	if !slices.Equal(got, []string{"https://a.test/x?y=1", "http://b.test/z"}) {
		t.Fatalf("Links = %v", got)
	}
}
