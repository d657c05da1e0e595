// Package ratelimit is a keyed token-bucket limiter (golang.org/x/time/rate per key) with a bounded
// number of keys: the least recently used key is forgotten when the bound is reached. The control plane
// limits authentication attempts and failures with it, per client IP and per account, in each
// control-plane process (docs/security.md, "Rate limits").
package ratelimit

import (
	"container/list"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the keys a Limiter remembers.
const DefaultMaxKeys = 10000

// Limit is a bucket: Burst attempts at once, refilled at one per Every.
type Limit struct {
	Burst int
	Every time.Duration
}

// Limiter limits events per key. The zero value is not usable: use New.
type Limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int

	mu    sync.Mutex
	keys  map[string]*list.Element // of *entry
	order *list.List               // most recently used first
}

type entry struct {
	key string
	lim *rate.Limiter
}

// New returns a Limiter of l remembering at most maxKeys keys (≤ 0: DefaultMaxKeys). A Limit with
// Burst ≤ 0 or Every ≤ 0 never limits.
func New(l Limit, maxKeys int) *Limiter {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	lim := rate.Inf
	if l.Burst > 0 && l.Every > 0 {
		lim = rate.Every(l.Every)
	}
	return &Limiter{limit: lim, burst: l.Burst, maxKeys: maxKeys, keys: map[string]*list.Element{}, order: list.New()}
}

// Len is how many keys the limiter remembers.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}

// get returns key's bucket, creating it (and forgetting the least recently used key past maxKeys).
// l.mu must be held.
func (l *Limiter) get(key string) *rate.Limiter {
	if el, ok := l.keys[key]; ok {
		l.order.MoveToFront(el)
		return el.Value.(*entry).lim
	}
	e := &entry{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
	l.keys[key] = l.order.PushFront(e)
	for l.order.Len() > l.maxKeys {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.keys, old.Value.(*entry).key)
	}
	return e.lim
}

// Allow takes one token of key at now. When none is left it takes nothing and returns false and how
// long until one is.
func (l *Limiter) Allow(key string, now time.Time) (bool, time.Duration) {
	if l.limit == rate.Inf {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.get(key)
	if lim.AllowN(now, 1) {
		return true, 0
	}
	return false, wait(lim, now)
}

// Blocked reports whether key has no token left at now (and how long until it has one), without
// taking any: callers that count failures only check first and Allow after a failure.
func (l *Limiter) Blocked(key string, now time.Time) (bool, time.Duration) {
	if l.limit == rate.Inf {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.keys[key]
	if !ok {
		return false, 0
	}
	lim := el.Value.(*entry).lim
	if lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, wait(lim, now)
}

// wait is how long until lim has a whole token, at least a second.
func wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	d := time.Duration(math.Ceil(missing / float64(lim.Limit()) * float64(time.Second)))
	return max(d, time.Second)
}

// ClientIP is the key of r's client: the IP address of the connection's peer. Forwarding headers are
// not trusted (behind a reverse proxy, every client shares its address).
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
