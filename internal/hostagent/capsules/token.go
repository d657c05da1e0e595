package capsules

import (
	"crypto/rand"
	"encoding/base64"
)

// NewEnvdToken returns a fresh envd access token: 32 random bytes,
// base64url without padding (docs/security.md).
func NewEnvdToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
