// Package ids converts entity UUIDs to and from the API's prefixed base-36
// form (cl-…, team-…, usr-…): the prefix, then the UUID as a 128-bit unsigned
// number in lower-case base 36, left-padded with 0 to 25 characters.
package ids

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/google/uuid"
)

// Prefix names an entity kind by the prefix of its API ids.
type Prefix string

// The entity kinds of the API contract.
const (
	Capsule          Prefix = "cl-"
	Team             Prefix = "team-"
	User             Prefix = "usr-"
	APIKey           Prefix = "key-"
	Host             Prefix = "host-"
	HostToken        Prefix = "htok-"
	HostRefreshToken Prefix = "hrt-"
	AuditLog         Prefix = "log-"
	Build            Prefix = "bld-"
	Channel          Prefix = "ch-"
)

// Len is the number of base-36 digits after the prefix.
const Len = 25

// ErrInvalid is wrapped by every Parse error.
var ErrInvalid = errors.New("invalid id")

const digits = "0123456789abcdefghijklmnopqrstuvwxyz"

// Format returns the API form of u, e.g. "cl-0k4xq2m9d8e7r6t5y4u3i2o1p".
func (p Prefix) Format(u uuid.UUID) string {
	hi := binary.BigEndian.Uint64(u[:8])
	lo := binary.BigEndian.Uint64(u[8:])
	var buf [Len]byte
	for i := Len - 1; i >= 0; i-- {
		// (hi:lo) / 36 with the remainder, one 64-bit half at a time.
		var rem uint64
		hi, rem = bits.Div64(0, hi, 36)
		lo, rem = bits.Div64(rem, lo, 36)
		buf[i] = digits[rem]
	}
	return string(p) + string(buf[:])
}

// Parse returns the UUID of an id in the API form with prefix p. A wrong
// prefix, length or digit, or a value of 2^128 or more, is an error wrapping
// ErrInvalid.
func (p Prefix) Parse(s string) (uuid.UUID, error) {
	rest, ok := strings.CutPrefix(s, string(p))
	if !ok {
		return uuid.UUID{}, fmt.Errorf("%w: %q does not start with %q", ErrInvalid, s, string(p))
	}
	if len(rest) != Len {
		return uuid.UUID{}, fmt.Errorf("%w: %q: want %d base-36 digits after %q, got %d", ErrInvalid, s, Len, string(p), len(rest))
	}
	var hi, lo uint64
	for i := 0; i < len(rest); i++ {
		d, ok := digitValue(rest[i])
		if !ok {
			return uuid.UUID{}, fmt.Errorf("%w: %q: %q is not a lower-case base-36 digit", ErrInvalid, s, rest[i])
		}
		// (hi:lo) = (hi:lo)*36 + d, failing on overflow past 128 bits.
		hiCarry, hiMul := bits.Mul64(hi, 36)
		loHi, loMul := bits.Mul64(lo, 36)
		var c uint64
		lo, c = bits.Add64(loMul, d, 0)
		var c2 uint64
		hi, c2 = bits.Add64(hiMul, loHi, c)
		if hiCarry != 0 || c2 != 0 {
			return uuid.UUID{}, fmt.Errorf("%w: %q is out of range", ErrInvalid, s)
		}
	}
	var u uuid.UUID
	binary.BigEndian.PutUint64(u[:8], hi)
	binary.BigEndian.PutUint64(u[8:], lo)
	return u, nil
}

// New returns a new random (version 4) UUID and its API form.
func (p Prefix) New() (uuid.UUID, string) {
	u := uuid.New()
	return u, p.Format(u)
}

func digitValue(c byte) (uint64, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0'), true
	case c >= 'a' && c <= 'z':
		return uint64(c-'a') + 10, true
	}
	return 0, false
}
