// Package seal encrypts secrets the control plane keeps at rest in the
// database (docs/security.md): channel configs and capsules' envd access
// tokens. A Box seals with AES-256-GCM under one 32-byte key; the caller's
// additional data (the owning row's id) binds a sealed value to its row, so
// a value copied to another row does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// version prefixes sealed values, so the format (or key) can change later.
const version = 1

// ErrFormat is returned by Open for a value that is not a sealed value of
// this format.
var ErrFormat = errors.New("seal: unknown format")

// Box seals and opens values under one key.
type Box struct{ aead cipher.AEAD }

// New returns a Box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("seal: key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal returns version || nonce || ciphertext of plain, bound to ad.
func (b *Box) Seal(ad, plain []byte) ([]byte, error) {
	out := make([]byte, 1+b.aead.NonceSize(), 1+b.aead.NonceSize()+len(plain)+b.aead.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return b.aead.Seal(out, out[1:], plain, ad), nil
}

// Open reverses Seal; a different key or ad, or a changed value, fails.
func (b *Box) Open(ad, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != version {
		return nil, ErrFormat
	}
	plain, err := b.aead.Open(nil, sealed[1:1+n], sealed[1+n:], ad)
	if err != nil {
		return nil, fmt.Errorf("seal: open: %w", err)
	}
	return plain, nil
}
