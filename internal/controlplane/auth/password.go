package auth

import (
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/wrenn/wrenn/internal/apierr"
)

// Password rules (docs/api.md). bcrypt reads at most 72 bytes; longer passwords are refused rather than silently
// truncated.
const (
	MinPasswordLength = 8  // characters
	MaxPasswordBytes  = 72 // bytes of UTF-8
	BcryptCost        = 12
)

// bcryptCost is BcryptCost; tests lower it to keep hashing fast.
var bcryptCost = BcryptCost

// dummyHash is a cost-12 hash of a random secret nobody knows: CheckPassword compares against it when
// there is no hash, so a login for an unknown account costs the same time as a wrong password.
const dummyHash = "$2a$12$sxsE/T1Bh9W1k3JGdo6SV.vbevMRrHwz90H10oooEHFX9AM1Cj2k6"

// ValidatePassword checks a new password against the rules: 400 invalid_request naming the rule.
func ValidatePassword(password string) error {
	if !utf8.ValidString(password) {
		return apierr.InvalidRequest("password must be valid UTF-8")
	}
	if utf8.RuneCountInString(password) < MinPasswordLength {
		return apierr.InvalidRequestf("password must be at least %d characters", MinPasswordLength)
	}
	if len(password) > MaxPasswordBytes {
		return apierr.InvalidRequestf("password must be at most %d bytes", MaxPasswordBytes)
	}
	return nil
}

// HashPassword validates password and returns its bcrypt hash (cost 12).
func HashPassword(password string) (string, error) {
	if err := ValidatePassword(password); err != nil {
		return "", err
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether password matches hash. An empty hash (no such account, or an account
// without a password) never matches but takes as long as a real comparison. A malformed hash never
// matches.
func CheckPassword(hash, password string) bool {
	if hash == "" {
		_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(password))
		return false
	}
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	return err == nil
}
