package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGenerateAPIKey(t *testing.T) {
	format := regexp.MustCompile(`^wrn_[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 200 {
		k := GenerateAPIKey()
		if !format.MatchString(k.Secret) || !IsAPIKey(k.Secret) {
			t.Fatalf("bad key %q", k.Secret)
		}
		sum := sha256.Sum256([]byte(k.Secret))
		if k.Hash != hex.EncodeToString(sum[:]) {
			t.Fatalf("hash %q is not the SHA-256 hex of the secret", k.Hash)
		}
		if k.Prefix != k.Secret[:10] || !strings.HasPrefix(k.Prefix, "wrn_") || len(k.Prefix) != 10 {
			t.Fatalf("prefix %q", k.Prefix)
		}
		if seen[k.Secret] {
			t.Fatal("duplicate key")
		}
		seen[k.Secret] = true
	}
}

func TestIsAPIKey(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"wrn_0123456789abcdef0123456789abcdef", true},
		{"wrn_0123456789ABCDEF0123456789abcdef", false},
		{"wrn_0123456789abcdef0123456789abcde", false},
		{"wrn_0123456789abcdef0123456789abcdef0", false},
		{"wrx_0123456789abcdef0123456789abcdef", false},
		{"wrn_0123456789abcdef0123456789abcdeg", false},
		{"wrn-0123456789abcdef0123456789abcdef", false},
		{"", false},
		{"wrn_", false},
	}
	for _, tt := range tests {
		if got := IsAPIKey(tt.in); got != tt.want {
			t.Errorf("IsAPIKey(%q) = %v", tt.in, got)
		}
	}
}

func TestHashComparisons(t *testing.T) {
	k := GenerateAPIKey()
	other := GenerateAPIKey()
	tests := []struct {
		name string
		got  bool
		want bool
	}{
		{"equal", EqualHashes(k.Hash, HashSecret(k.Secret)), true},
		{"different", EqualHashes(k.Hash, other.Hash), false},
		{"different length", EqualHashes(k.Hash, k.Hash[:10]), false},
		{"empty", EqualHashes("", ""), true},
		{"matches", MatchesHash(k.Secret, k.Hash), true},
		{"does not match", MatchesHash(other.Secret, k.Hash), false},
		{"plain is not its hash", MatchesHash(k.Hash, k.Hash), false},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v", tt.name, tt.got)
		}
	}
}

func TestTokenKinds(t *testing.T) {
	tests := []struct {
		kind   TokenKind
		length int
		ttl    time.Duration
	}{
		{ActivationToken, 32, 30 * time.Minute},
		{PasswordResetToken, 64, 15 * time.Minute},
		{HostRegistrationToken, 64, time.Hour},
		{HostRefreshToken, 64, 60 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.kind.Name, func(t *testing.T) {
			if tt.kind.TTL != tt.ttl {
				t.Fatalf("TTL %v, want %v", tt.kind.TTL, tt.ttl)
			}
			if got := tt.kind.ExpiresAt(testNow); !got.Equal(testNow.Add(tt.ttl)) {
				t.Fatalf("ExpiresAt %v", got)
			}
			a, b := tt.kind.New(), tt.kind.New()
			if len(a.Plain) != tt.length || !tt.kind.Valid(a.Plain) || a.Plain == b.Plain {
				t.Fatalf("tokens %q %q", a.Plain, b.Plain)
			}
			if a.Hash != HashSecret(a.Plain) || a.Hash == a.Plain {
				t.Fatalf("hash %q", a.Hash)
			}
			invalid := []string{"", a.Plain[1:], a.Plain + "0", "A" + a.Plain[1:], "z" + a.Plain[1:], a.Plain[1:] + "!"}
			for _, s := range invalid {
				if tt.kind.Valid(s) {
					t.Errorf("Valid(%q) = true", s)
				}
			}
		})
	}
	if ActivationToken.Valid(PasswordResetToken.New().Plain) {
		t.Fatal("a 64-hex token passed as an activation token")
	}
}
