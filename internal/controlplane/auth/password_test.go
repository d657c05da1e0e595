package auth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/wrenn/wrenn/internal/apierr"
)

// fastBcrypt lowers the bcrypt cost for one test.
func fastBcrypt(t *testing.T) {
	t.Helper()
	prev := bcryptCost
	bcryptCost = bcrypt.MinCost
	t.Cleanup(func() { bcryptCost = prev })
}

func TestValidatePassword(t *testing.T) {
	tests := []struct {
		name    string
		pw      string
		message string // "" = valid
	}{
		{"eight ascii", "abcdefgh", ""},
		{"seven ascii", "abcdefg", "password must be at least 8 characters"},
		{"empty", "", "password must be at least 8 characters"},
		{"eight runes, more bytes", "ééééçççç", ""},
		{"seven runes, many bytes", "ééééççç", "password must be at least 8 characters"},
		{"72 bytes", strings.Repeat("a", 72), ""},
		{"73 bytes", strings.Repeat("a", 73), "password must be at most 72 bytes"},
		{"invalid utf-8", "abcdefgh\xff", "password must be valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePassword(tt.pw)
			if tt.message == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if e := requireCode(t, err, 400, apierr.CodeInvalidRequest); e.Message != tt.message {
				t.Fatalf("message %q, want %q", e.Message, tt.message)
			}
		})
	}
}

func TestHashPasswordCost(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != BcryptCost {
		t.Fatalf("cost = %d, %v; want %d", cost, err, BcryptCost)
	}
	if cost, err := bcrypt.Cost([]byte(dummyHash)); err != nil || cost != BcryptCost {
		t.Fatalf("dummy hash cost = %d, %v", cost, err)
	}
	if !CheckPassword(h, "correct horse") || CheckPassword(h, "correct horsf") {
		t.Fatal("CheckPassword on a cost-12 hash")
	}
}

func TestHashAndCheckPassword(t *testing.T) {
	fastBcrypt(t)
	h, err := HashPassword("s3cret-password")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := HashPassword("s3cret-password")
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Fatal("hashes are not salted")
	}
	if _, err := HashPassword("short"); err == nil {
		t.Fatal("HashPassword accepted a short password")
	} else {
		requireCode(t, err, 400, apierr.CodeInvalidRequest)
	}
	tests := []struct {
		name string
		hash string
		pw   string
		want bool
	}{
		{"match", h, "s3cret-password", true},
		{"second hash matches", h2, "s3cret-password", true},
		{"mismatch", h, "s3cret-passworD", false},
		{"empty password", h, "", false},
		{"no hash", "", "s3cret-password", false},
		{"no hash empty password", "", "", false},
		{"malformed hash", "not-a-bcrypt-hash", "s3cret-password", false},
		{"too long password", h, "s3cret-password" + strings.Repeat("x", 80), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckPassword(tt.hash, tt.pw); got != tt.want {
				t.Fatalf("CheckPassword = %v, want %v", got, tt.want)
			}
		})
	}
}
