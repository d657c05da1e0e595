package accounts

import (
	netmail "net/mail"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/wrenn/wrenn/internal/apierr"
)

// Field limits (docs/api.md).
const (
	maxEmailLength    = 254
	maxNameLength     = 100 // user display names, characters
	maxTeamName       = 128
	maxAPIKeyName     = 256
	defaultAPIKeyName = "Unnamed API Key"
)

var teamNameRE = regexp.MustCompile(`^[A-Za-z0-9 _]{1,128}$`)

// normalizeEmail is the stored form of an email: trimmed, lower case.
func normalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// checkEmail validates a normalized email address.
func checkEmail(email string) error {
	if email == "" {
		return apierr.InvalidRequest("email is required")
	}
	if len(email) > maxEmailLength {
		return apierr.InvalidRequestf("email must be at most %d characters", maxEmailLength)
	}
	a, err := netmail.ParseAddress(email)
	local, domain, ok := strings.Cut(email, "@")
	if err != nil || a.Address != email || !ok || local == "" || domain == "" {
		return apierr.InvalidRequestf("invalid email address %q", email)
	}
	return nil
}

// checkName trims and validates a user's display name (1–100 characters).
func checkName(name string) (string, error) {
	name = strings.TrimSpace(name)
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return "", apierr.InvalidRequest("name is required")
	case n > maxNameLength:
		return "", apierr.InvalidRequestf("name must be at most %d characters", maxNameLength)
	case !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", apierr.InvalidRequest("name must be printable text")
	}
	return name, nil
}

// checkTeamName trims and validates a team name (1–128 characters of A-Z, a-z, 0-9, space, _).
func checkTeamName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return "", apierr.InvalidRequest("name is required")
	}
	if !teamNameRE.MatchString(name) {
		return "", apierr.InvalidRequestf("invalid team name: use 1–%d characters of letters, digits, spaces and underscores", maxTeamName)
	}
	return name, nil
}
