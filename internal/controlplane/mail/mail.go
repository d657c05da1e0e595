// Package mail delivers the control plane's account emails (activation and password-reset links, docs/api.md):
// over SMTP when a server is configured, otherwise through a development mailer that logs each message,
// link included, and sends nothing.
package mail

import (
	"context"
	"log/slog"
	"strings"
)

// Message is one plain-text email to a single recipient.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Mailer delivers messages. Send returns once the message is handed over (or definitely failed).
type Mailer interface {
	Send(ctx context.Context, m Message) error
}

// Log is the development Mailer: it logs every message (recipient, subject, the links it contains and the
// text) and sends nothing.
type Log struct{ log *slog.Logger }

// NewLog returns a Log mailer writing to log (slog.Default when nil).
func NewLog(log *slog.Logger) *Log {
	if log == nil {
		log = slog.Default()
	}
	return &Log{log: log}
}

// Send logs m and reports success.
func (l *Log) Send(ctx context.Context, m Message) error {
	l.log.InfoContext(ctx, "mail not sent (no SMTP server configured)",
		"to", m.To, "subject", m.Subject, "links", Links(m.Text), "text", m.Text)
	return nil
}

// Links returns the http(s) URLs in text, in order.
func Links(text string) []string {
	var links []string
	for _, f := range strings.Fields(text) {
		i := strings.Index(f, "https://")
		if j := strings.Index(f, "http://"); i < 0 || (j >= 0 && j < i) {
			i = j
		}
		if i >= 0 {
			links = append(links, strings.TrimRight(f[i:], ".,;:!?)>\"'"))
		}
	}
	return links
}
