package capsules

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// envdTokenBytes is the randomness of an envd access token (docs/security.md).
const envdTokenBytes = 32

// newEnvdToken returns a fresh envd access token, base64url without padding.
func newEnvdToken() (string, error) {
	b := make([]byte, envdTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("envd token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// newTrafficToken returns a fresh traffic access token for the secure capsule row id, sealed like its
// envd token (docs/security.md); it has the envd token's randomness.
func (r *Resolver) newTrafficToken(id uuid.UUID) ([]byte, error) {
	tok, err := newEnvdToken()
	if err != nil {
		return nil, fmt.Errorf("traffic token: %w", err)
	}
	sealed, err := r.Tokens.Seal(id[:], []byte(tok))
	if err != nil {
		return nil, fmt.Errorf("seal traffic token: %w", err)
	}
	return sealed, nil
}

// TrafficToken returns secure capsule c's traffic access token; "" when c is not secure.
func (r *Resolver) TrafficToken(c db.Capsule) (string, error) {
	if !c.Secure || c.TrafficToken == nil {
		return "", nil
	}
	plain, err := r.Tokens.Open(c.ID[:], c.TrafficToken)
	if err != nil {
		return "", fmt.Errorf("capsule %s: open traffic token: %w", ids.Capsule.Format(c.ID), err)
	}
	return string(plain), nil
}

// sealEnvdToken seals token for the capsule row id.
func (r *Resolver) sealEnvdToken(id uuid.UUID, token string) ([]byte, error) {
	sealed, err := r.Tokens.Seal(id[:], []byte(token))
	if err != nil {
		return nil, fmt.Errorf("seal envd token: %w", err)
	}
	return sealed, nil
}

// EnvdToken returns capsule c's envd access token; "" for a capsule created before tokens existed.
func (r *Resolver) EnvdToken(c db.Capsule) (string, error) {
	if c.EnvdToken == nil {
		return "", nil
	}
	plain, err := r.Tokens.Open(c.ID[:], c.EnvdToken)
	if err != nil {
		return "", fmt.Errorf("capsule %s: open envd token: %w", ids.Capsule.Format(c.ID), err)
	}
	return string(plain), nil
}

// View renders c for its owning team or an admin: the API object with its envd access token and, for a
// secure capsule, its traffic access token. A token that does not open (the key changed) is left out
// and logged.
func (r *Resolver) View(c db.Capsule) Capsule {
	v := CapsuleView(c)
	tok, err := r.EnvdToken(c)
	if err != nil {
		r.Log.Error("capsule view", "err", err)
	}
	v.EnvdAccessToken = tok
	traffic, err := r.TrafficToken(c)
	if err != nil {
		r.Log.Error("capsule view", "err", err)
	}
	v.TrafficAccessToken = traffic
	return v
}
