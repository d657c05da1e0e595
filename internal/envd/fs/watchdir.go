package fs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// defaultKeepalive is the silence after which a stream gets a keepalive
// when the client names no Keepalive-Ping-Interval.
const defaultKeepalive = 90 * time.Second

// WatchDir streams the changes in a directory until the client cancels or
// its deadline passes.
func (s *Service) WatchDir(ctx context.Context, req *connect.Request[filesystem.WatchDirRequest], stream *connect.ServerStream[filesystem.WatchDirResponse]) error {
	_, path, err := s.resolve(req.Header(), req.Msg.GetPath())
	if err != nil {
		return err
	}
	if !s.track() {
		return connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down"))
	}
	defer s.wg.Done()
	w, err := newWatch(watchOptions{
		path:               path,
		recursive:          req.Msg.GetRecursive(),
		includeEntry:       req.Msg.GetIncludeEntry(),
		allowNetworkMounts: req.Msg.GetAllowNetworkMounts(),
	})
	if err != nil {
		return err
	}
	defer w.close()

	// The watch is installed: from here on every change is reported.
	if err := stream.Send(&filesystem.WatchDirResponse{Event: &filesystem.WatchDirResponse_Start{Start: &filesystem.WatchDirResponse_StartEvent{}}}); err != nil {
		return err
	}
	interval := keepaliveInterval(req.Header().Get("Keepalive-Ping-Interval"))
	keepalive := time.NewTimer(interval)
	defer keepalive.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down"))
		case <-keepalive.C:
			if err := stream.Send(&filesystem.WatchDirResponse{Event: &filesystem.WatchDirResponse_Keepalive{Keepalive: &filesystem.WatchDirResponse_KeepAlive{}}}); err != nil {
				return err
			}
		case ev, ok := <-w.fw.Events:
			if !ok {
				return connect.NewError(connect.CodeInternal, fmt.Errorf("watcher of %s closed", path))
			}
			for _, e := range w.handle(ev) {
				if err := stream.Send(&filesystem.WatchDirResponse{Event: &filesystem.WatchDirResponse_Filesystem{Filesystem: e}}); err != nil {
					return err
				}
			}
		case err, ok := <-w.fw.Errors:
			if !ok {
				return connect.NewError(connect.CodeInternal, fmt.Errorf("watcher of %s closed", path))
			}
			s.log.WarnContext(ctx, "watch failed", "path", path, "error", err)
			return connect.NewError(connect.CodeInternal, fmt.Errorf("watch %s: %w", path, err))
		}
		keepalive.Reset(interval)
	}
}

// keepaliveInterval parses Keepalive-Ping-Interval (seconds).
func keepaliveInterval(h string) time.Duration {
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return defaultKeepalive
}

// track registers one more goroutine with the service's wait group unless
// the service is closed.
func (s *Service) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}
