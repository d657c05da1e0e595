// Package fs implements the envd filesystem Connect service (docs/envd.md,
// docs/envd.md): stat, list, make, move and remove paths, and watch
// directories by stream or by polling.
package fs

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem/filesystemconnect"
	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/oserr"
	"github.com/wrenn/wrenn/internal/envd/osuser"
)

var _ filesystemconnect.FilesystemHandler = (*Service)(nil)

// Service serves filesystem.Filesystem. Operations run with envd's own
// privileges; the caller's user only decides path resolution and the owner
// of what is created.
type Service struct {
	log      *slog.Logger
	defaults *defaults.Store

	// ctx ends when the service closes; open WatchDir streams end with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // polling watcher goroutines and open streams

	mu       sync.Mutex // guards watchers and closed
	watchers map[string]*pollWatcher
	closed   bool
}

// New returns a service that resolves users and paths with d.
func New(log *slog.Logger, d *defaults.Store) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{log: log, defaults: d, ctx: ctx, cancel: cancel, watchers: map[string]*pollWatcher{}}
}

// Close removes every polling watcher, ends open watch streams and waits
// for their goroutines.
func (s *Service) Close() {
	s.mu.Lock()
	s.closed = true
	ws := s.watchers
	s.watchers = map[string]*pollWatcher{}
	s.mu.Unlock()
	s.cancel()
	for _, w := range ws {
		w.stop()
	}
	s.wg.Wait()
}

// requestUser returns the user named by the Basic authorization header, or
// the default user when there is none.
func (s *Service) requestUser(h http.Header) (*osuser.User, error) {
	name := s.defaults.DefaultUser()
	if h.Get("Authorization") != "" {
		n, _, ok := (&http.Request{Header: h}).BasicAuth()
		if !ok {
			return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("invalid authorization header"))
		}
		name = n
	}
	u, err := osuser.Lookup(name)
	if err != nil {
		if errors.Is(err, osuser.ErrUnknownUser) {
			return nil, connect.NewError(connect.CodeUnauthenticated, err)
		}
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return u, nil
}

// resolve returns the request's user and path resolved against it.
func (s *Service) resolve(h http.Header, path string) (*osuser.User, string, error) {
	u, err := s.requestUser(h)
	if err != nil {
		return nil, "", err
	}
	p, err := ResolvePath(u, path, s.defaults.DefaultWorkdir())
	if err != nil {
		return nil, "", err
	}
	return u, p, nil
}

// ResolvePath is osuser.ResolvePath with its error mapped to
// invalid_argument.
func ResolvePath(u *osuser.User, path, workdir string) (string, error) {
	p, err := osuser.ResolvePath(u, path, workdir)
	if err != nil {
		return "", connect.NewError(connect.CodeInvalidArgument, err)
	}
	return p, nil
}

// connectErr maps an OS error to a Connect error whose message names the
// operation.
func connectErr(err error, format string, args ...any) error {
	return oserr.Connect(err, format, args...)
}
