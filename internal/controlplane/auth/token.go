package auth

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// TokenKind describes a single-use or rotating secret the control plane hands out (docs/api.md): random bytes
// written as lower-case hex (URL-safe), stored only as HashSecret of the text.
type TokenKind struct {
	Name  string
	Bytes int           // random bytes; the text is twice as long
	TTL   time.Duration // lifetime from issue
}

// The token kinds of docs/api.md.
var (
	ActivationToken       = TokenKind{Name: "activation", Bytes: 16, TTL: 30 * time.Minute}
	PasswordResetToken    = TokenKind{Name: "password reset", Bytes: 32, TTL: 15 * time.Minute}
	HostRegistrationToken = TokenKind{Name: "host registration", Bytes: 32, TTL: time.Hour}
	HostRefreshToken      = TokenKind{Name: "host refresh", Bytes: 32, TTL: 60 * 24 * time.Hour}
)

// Token is a freshly generated token: Plain goes to its recipient once, Hash to the database.
type Token struct {
	Plain string
	Hash  string
}

// New returns a new random token of kind k.
func (k TokenKind) New() Token {
	b := make([]byte, k.Bytes)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	plain := hex.EncodeToString(b)
	return Token{Plain: plain, Hash: HashSecret(plain)}
}

// Valid reports whether s has the format of kind k; anything else is rejected before a lookup (and
// answered exactly like an unknown token).
func (k TokenKind) Valid(s string) bool {
	return len(s) == 2*k.Bytes && isLowerHex(s)
}

// ExpiresAt is when a token of kind k issued at issued expires.
func (k TokenKind) ExpiresAt(issued time.Time) time.Time { return issued.Add(k.TTL) }
