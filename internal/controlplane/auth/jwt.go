package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// Token lifetimes (docs/api.md).
const (
	UserTokenTTL = 6 * time.Hour
	HostTokenTTL = 7 * 24 * time.Hour
)

// MinSecretLength is the minimum length of the server's JWT signing secret, in characters.
const MinSecretLength = 32

const hostTyp = "host"

// ErrInvalidToken is returned (wrapped) for every JWT that fails to parse or verify: bad signature,
// wrong algorithm, expired, missing or malformed claims, or a token of the other kind.
var ErrInvalidToken = errors.New("invalid token")

// Signer issues and verifies the control plane's HS256 JWTs: user tokens and host tokens share the
// server secret and are told apart by the typ claim.
type Signer struct {
	secret []byte
	now    func() time.Time
}

// NewSigner returns a Signer for secret, which must be at least MinSecretLength characters.
func NewSigner(secret string) (*Signer, error) {
	if n := utf8.RuneCountInString(secret); n < MinSecretLength {
		return nil, fmt.Errorf("JWT secret must be at least %d characters, got %d", MinSecretLength, n)
	}
	return &Signer{secret: []byte(secret), now: time.Now}, nil
}

// UserClaims are the claims of a user JWT (docs/api.md). IsAdmin is for display only: admin rights are always
// re-checked in the database.
type UserClaims struct {
	UserID  string // sub, usr-…
	TeamID  string // team-…, "" when the user has no team
	Role    Role   // role in TeamID; "" when TeamID is ""
	Email   string
	Name    string
	IsAdmin bool
	// SessionVersion is the user's session version when the token was issued (claim sv): a token
	// whose version is no longer the user's is refused (docs/security.md, "Keys and sessions").
	SessionVersion int32
	IssuedAt       time.Time
	ExpiresAt      time.Time
}

// HostClaims are the claims of a host JWT (docs/api.md).
type HostClaims struct {
	HostID    string // host_id and sub, host-…
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// userJWT is the wire form of a user token: sub, team_id, role, email, name, is_admin, iat, exp.
type userJWT struct {
	Typ     string `json:"typ,omitempty"` // never set on user tokens; read to reject host tokens
	TeamID  string `json:"team_id"`
	Role    string `json:"role"`
	Email   string `json:"email"`
	Name    string `json:"name"`
	IsAdmin bool   `json:"is_admin"`
	Session int32  `json:"sv,omitempty"`
	jwt.RegisteredClaims
}

// hostJWT is the wire form of a host token: typ "host", host_id, sub, iat, exp.
type hostJWT struct {
	Typ    string `json:"typ"`
	HostID string `json:"host_id"`
	jwt.RegisteredClaims
}

// IssueUser signs a user JWT valid for UserTokenTTL from now. The IssuedAt and ExpiresAt of c are
// ignored; the returned claims carry the ones signed.
func (s *Signer) IssueUser(c UserClaims) (string, UserClaims, error) {
	if err := checkUserClaims(c.UserID, c.TeamID, string(c.Role)); err != nil {
		return "", UserClaims{}, fmt.Errorf("issue user token: %w", err)
	}
	now := s.now().UTC().Truncate(time.Second)
	c.IssuedAt, c.ExpiresAt = now, now.Add(UserTokenTTL)
	claims := userJWT{
		TeamID:  c.TeamID,
		Role:    string(c.Role),
		Email:   c.Email,
		Name:    c.Name,
		IsAdmin: c.IsAdmin,
		Session: c.SessionVersion,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.UserID,
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
		},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
	if err != nil {
		return "", UserClaims{}, fmt.Errorf("sign user token: %w", err)
	}
	return tok, c, nil
}

// ParseUser verifies a user JWT and returns its claims. Host tokens, and any token with a typ claim,
// are rejected. Errors wrap ErrInvalidToken.
func (s *Signer) ParseUser(token string) (UserClaims, error) {
	var claims userJWT
	if err := s.parse(token, &claims); err != nil {
		return UserClaims{}, err
	}
	if claims.Typ != "" {
		return UserClaims{}, fmt.Errorf("%w: a %q token is not a user token", ErrInvalidToken, claims.Typ)
	}
	if err := checkUserClaims(claims.Subject, claims.TeamID, claims.Role); err != nil {
		return UserClaims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return UserClaims{
		UserID:         claims.Subject,
		TeamID:         claims.TeamID,
		Role:           Role(claims.Role),
		Email:          claims.Email,
		Name:           claims.Name,
		IsAdmin:        claims.IsAdmin,
		SessionVersion: claims.Session,
		IssuedAt:       claims.IssuedAt.UTC(),
		ExpiresAt:      claims.ExpiresAt.UTC(),
	}, nil
}

// IssueHost signs a host JWT for hostID valid for HostTokenTTL from now.
func (s *Signer) IssueHost(hostID string) (string, HostClaims, error) {
	if !strings.HasPrefix(hostID, "host-") {
		return "", HostClaims{}, fmt.Errorf("issue host token: host id %q lacks the host- prefix", hostID)
	}
	now := s.now().UTC().Truncate(time.Second)
	c := HostClaims{HostID: hostID, IssuedAt: now, ExpiresAt: now.Add(HostTokenTTL)}
	claims := hostJWT{
		Typ:    hostTyp,
		HostID: hostID,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   hostID,
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
		},
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
	if err != nil {
		return "", HostClaims{}, fmt.Errorf("sign host token: %w", err)
	}
	return tok, c, nil
}

// ParseHost verifies a host JWT and returns its claims. User tokens are rejected. Errors wrap
// ErrInvalidToken.
func (s *Signer) ParseHost(token string) (HostClaims, error) {
	var claims hostJWT
	if err := s.parse(token, &claims); err != nil {
		return HostClaims{}, err
	}
	switch {
	case claims.Typ != hostTyp:
		return HostClaims{}, fmt.Errorf("%w: not a host token", ErrInvalidToken)
	case !strings.HasPrefix(claims.HostID, "host-"):
		return HostClaims{}, fmt.Errorf("%w: host_id %q lacks the host- prefix", ErrInvalidToken, claims.HostID)
	case claims.Subject != claims.HostID:
		return HostClaims{}, fmt.Errorf("%w: sub %q differs from host_id %q", ErrInvalidToken, claims.Subject, claims.HostID)
	}
	return HostClaims{HostID: claims.HostID, IssuedAt: claims.IssuedAt.UTC(), ExpiresAt: claims.ExpiresAt.UTC()}, nil
}

// parse verifies signature, algorithm (HS256 only) and expiry, and requires iat.
func (s *Signer) parse(token string, claims jwt.Claims) error {
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return s.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(s.now),
	)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return fmt.Errorf("%w: missing iat", ErrInvalidToken)
	}
	return nil
}

// checkUserClaims checks the shape of a user token's identity claims.
func checkUserClaims(sub, teamID, role string) error {
	switch {
	case !strings.HasPrefix(sub, "usr-"):
		return fmt.Errorf("sub %q lacks the usr- prefix", sub)
	case teamID == "" && role != "":
		return fmt.Errorf("role %q without team_id", role)
	case teamID != "" && !strings.HasPrefix(teamID, "team-"):
		return fmt.Errorf("team_id %q lacks the team- prefix", teamID)
	case teamID != "" && !Role(role).Valid():
		return fmt.Errorf("invalid role %q", role)
	}
	return nil
}
