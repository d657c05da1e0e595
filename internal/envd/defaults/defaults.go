// Package defaults holds what POST /init configures for every later request:
// the global environment, the default user and workdir, and the access token.
package defaults

import (
	"maps"
	"sync"
	"time"
)

// DefaultUser is the user requests run as until /init names another.
const DefaultUser = "root"

// Store is safe for concurrent use.
type Store struct {
	mu      sync.RWMutex // guards every field below
	env     map[string]string
	user    string
	workdir string
	token   string
	applied time.Time // timestamp of the last applied /init body, zero if none
}

// New returns a store seeded with env (copied), default user root, no workdir
// and no token.
func New(env map[string]string) *Store {
	return &Store{env: maps.Clone(env), user: DefaultUser}
}

// Env returns a copy of the global environment.
func (s *Store) Env() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(s.env))
	maps.Copy(out, s.env)
	return out
}

// DefaultUser returns the name of the default user.
func (s *Store) DefaultUser() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.user
}

// DefaultWorkdir returns the default working directory, or "" if none is set.
func (s *Store) DefaultWorkdir() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.workdir
}

// Token returns the access token, or "" when envd is open.
func (s *Store) Token() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.token
}

// Update is one /init body. Nil or empty fields leave the current value alone,
// except AccessToken, where a non-nil pointer to "" clears the token.
type Update struct {
	EnvVars        map[string]string
	DefaultUser    string
	DefaultWorkdir string
	AccessToken    *string
	Timestamp      time.Time // zero: always applies
}

// Apply applies u unless it is older than or as old as the last applied
// update; it reports whether it applied. authorize is called under the lock
// with the current token and the token u would set, so the check and the
// change are atomic; an error from it aborts the update unchanged.
func (s *Store) Apply(u Update, authorize func(current string, next *string) error) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !u.Timestamp.IsZero() && !s.applied.IsZero() && !u.Timestamp.After(s.applied) {
		return false, nil
	}
	if authorize != nil {
		if err := authorize(s.token, u.AccessToken); err != nil {
			return false, err
		}
	}
	if s.env == nil {
		s.env = make(map[string]string, len(u.EnvVars))
	}
	maps.Copy(s.env, u.EnvVars)
	if u.DefaultUser != "" {
		s.user = u.DefaultUser
	}
	if u.DefaultWorkdir != "" {
		s.workdir = u.DefaultWorkdir
	}
	if u.AccessToken != nil {
		s.token = *u.AccessToken
	}
	if !u.Timestamp.IsZero() {
		s.applied = u.Timestamp
	}
	return true, nil
}

// SetEnv sets one global variable (used for host-provided identity such as
// WRENN_SANDBOX_ID, which is not subject to /init timestamps).
func (s *Store) SetEnv(key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.env == nil {
		s.env = map[string]string{}
	}
	s.env[key] = value
}
