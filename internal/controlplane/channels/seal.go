package channels

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// sealVersion prefixes sealed configs, so the format (or key) can change later.
const sealVersion = 1

// sealer encrypts channel configs with AES-256-GCM. The channel id is the additional data: a sealed
// config copied to another channel row does not open.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("channels: Config.Secret must be a 32-byte key, got %d bytes", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("channels: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("channels: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal returns version || nonce || ciphertext of cfg as JSON.
func (s *sealer) seal(channel uuid.UUID, cfg map[string]string) ([]byte, error) {
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode channel config: %w", err)
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("channel config nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plain, channel[:]), nil
}

// open reverses seal.
func (s *sealer) open(channel uuid.UUID, sealed []byte) (map[string]string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n || sealed[0] != sealVersion {
		return nil, errors.New("open channel config: unknown format")
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], channel[:])
	if err != nil {
		return nil, fmt.Errorf("open channel config: %w", err)
	}
	var cfg map[string]string
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return nil, fmt.Errorf("decode channel config: %w", err)
	}
	return cfg, nil
}
