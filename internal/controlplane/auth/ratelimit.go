package auth

import (
	"context"
	"time"

	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/ratelimit"
)

// DefaultKeyFailureLimit bounds the failed API-key authentications of one client IP
// (docs/security.md, "Rate limits").
var DefaultKeyFailureLimit = ratelimit.Limit{Burst: 30, Every: 2 * time.Second}

// MessageRateLimited is the message of 429 rate_limited answers.
const MessageRateLimited = "too many attempts: try again later"

type clientIPKey struct{}

// WithClientIP returns ctx carrying the client's IP address, the key of per-client rate limits.
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

// ClientIP returns the client IP stored by WithClientIP, or "".
func ClientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// LimitKeyFailures makes the authenticator count failed API-key authentications per client IP with
// l: a client past the limit is answered 429 rate_limited (with Retry-After) before its key is looked
// up. nil turns the limit off.
func (a *Authenticator) LimitKeyFailures(l *ratelimit.Limiter) { a.keyFailures = l }

// checkKeyLimit fails with 429 when ctx's client has no failed key authentication left.
func (a *Authenticator) checkKeyLimit(ctx context.Context) error {
	ip := ClientIP(ctx)
	if a.keyFailures == nil || ip == "" {
		return nil
	}
	if blocked, wait := a.keyFailures.Blocked(ip, time.Now()); blocked {
		return apierr.RateLimited(MessageRateLimited, wait)
	}
	return nil
}

// keyFailed counts a failed key authentication of ctx's client.
func (a *Authenticator) keyFailed(ctx context.Context) {
	if ip := ClientIP(ctx); a.keyFailures != nil && ip != "" {
		a.keyFailures.Allow(ip, time.Now())
	}
}
