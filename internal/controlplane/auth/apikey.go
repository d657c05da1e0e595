package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// API key format (docs/api.md): "wrn_" + 32 lower-case hex (16 random bytes); stored only as its SHA-256 hex;
// key_prefix, shown in listings, is the first 10 characters.
const (
	APIKeyPrefix    = "wrn_"
	apiKeyHexLen    = 32
	APIKeyLength    = len(APIKeyPrefix) + apiKeyHexLen
	KeyPrefixLength = 10
)

// APIKey is a freshly generated key. Secret is shown to the user once and never stored.
type APIKey struct {
	Secret string // wrn_…
	Hash   string // SHA-256 hex of Secret: what the database stores and looks up
	Prefix string // key_prefix: first 10 characters of Secret
}

// GenerateAPIKey returns a new random API key.
func GenerateAPIKey() APIKey {
	var b [apiKeyHexLen / 2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	secret := APIKeyPrefix + hex.EncodeToString(b[:])
	return APIKey{Secret: secret, Hash: HashSecret(secret), Prefix: secret[:KeyPrefixLength]}
}

// IsAPIKey reports whether s has the API key format; anything else is rejected before a lookup.
func IsAPIKey(s string) bool {
	return len(s) == APIKeyLength && strings.HasPrefix(s, APIKeyPrefix) && isLowerHex(s[len(APIKeyPrefix):])
}

// HashSecret is the stored form of an API key or one-time token: the SHA-256 of its text, in lower-case
// hex. Secrets are looked up by this hash, never compared in plain text.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// EqualHashes compares two stored hashes in constant time.
func EqualHashes(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// MatchesHash reports, in constant time, whether secret hashes to hash.
func MatchesHash(secret, hash string) bool {
	return EqualHashes(HashSecret(secret), hash)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
