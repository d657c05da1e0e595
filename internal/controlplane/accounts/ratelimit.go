package accounts

import (
	"net/http"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/ratelimit"
)

// RateLimits are the limits of the unauthenticated account routes (docs/security.md, "Rate limits"),
// kept by each control-plane process. A zero Limit is replaced by its default.
type RateLimits struct {
	// LoginFailuresPerIP and LoginFailuresPerAccount count failed logins (wrong email or password).
	LoginFailuresPerIP      ratelimit.Limit
	LoginFailuresPerAccount ratelimit.Limit
	// SignupsPerIP counts signup attempts.
	SignupsPerIP ratelimit.Limit
	// TokenFailuresPerIP counts activation and password-reset confirmations with a bad token.
	TokenFailuresPerIP ratelimit.Limit
	// ResetsPerIP and ResetsPerAccount count password-reset requests (each may send a mail).
	ResetsPerIP      ratelimit.Limit
	ResetsPerAccount ratelimit.Limit
}

// DefaultRateLimits are the limits of a Service whose Config sets none.
var DefaultRateLimits = RateLimits{
	LoginFailuresPerIP:      ratelimit.Limit{Burst: 20, Every: 3 * time.Second},
	LoginFailuresPerAccount: ratelimit.Limit{Burst: 10, Every: time.Minute},
	SignupsPerIP:            ratelimit.Limit{Burst: 20, Every: 3 * time.Minute},
	TokenFailuresPerIP:      ratelimit.Limit{Burst: 20, Every: 3 * time.Second},
	ResetsPerIP:             ratelimit.Limit{Burst: 10, Every: time.Minute},
	ResetsPerAccount:        ratelimit.Limit{Burst: 5, Every: 10 * time.Minute},
}

// limiters are a Service's rate limiters.
type limiters struct {
	loginIP, loginAccount, signupIP, tokenIP, resetIP, resetAccount *ratelimit.Limiter
}

func newLimiters(l RateLimits) limiters {
	d := DefaultRateLimits
	pick := func(v, def ratelimit.Limit) *ratelimit.Limiter {
		if v == (ratelimit.Limit{}) {
			v = def
		}
		return ratelimit.New(v, 0)
	}
	return limiters{
		loginIP:      pick(l.LoginFailuresPerIP, d.LoginFailuresPerIP),
		loginAccount: pick(l.LoginFailuresPerAccount, d.LoginFailuresPerAccount),
		signupIP:     pick(l.SignupsPerIP, d.SignupsPerIP),
		tokenIP:      pick(l.TokenFailuresPerIP, d.TokenFailuresPerIP),
		resetIP:      pick(l.ResetsPerIP, d.ResetsPerIP),
		resetAccount: pick(l.ResetsPerAccount, d.ResetsPerAccount),
	}
}

// limitKey is one limiter and the key a request counts under.
type limitKey struct {
	l   *ratelimit.Limiter
	key string
}

// blocked answers 429 rate_limited when any of keys has no attempt left (nothing is taken).
func blocked(keys ...limitKey) error {
	now := time.Now()
	for _, k := range keys {
		if b, wait := k.l.Blocked(k.key, now); b {
			return apierr.RateLimited(auth.MessageRateLimited, wait)
		}
	}
	return nil
}

// take counts an attempt (or a failure) under every key; it answers 429 rate_limited when one had none
// left.
func take(keys ...limitKey) error {
	now := time.Now()
	var err error
	for _, k := range keys {
		if ok, wait := k.l.Allow(k.key, now); !ok && err == nil {
			err = apierr.RateLimited(auth.MessageRateLimited, wait)
		}
	}
	return err
}

// clientIP is the rate-limit key of r's client.
func clientIP(r *http.Request) string { return ratelimit.ClientIP(r) }
