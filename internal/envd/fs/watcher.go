package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// maxBufferedEvents bounds what a polling watcher keeps between polls; the
// oldest events are dropped first.
const maxBufferedEvents = 10000

// pollWatcher is a watch whose events wait in a buffer until polled. It
// lives until RemoveWatcher or Close, independent of connections.
type pollWatcher struct {
	w    *watch
	done chan struct{} // closed when the reading goroutine has returned

	mu     sync.Mutex // guards events and err
	events []*filesystem.FilesystemEvent
	err    error // set when the watch failed
}

// CreateWatcher starts a polling watcher and returns its id.
func (s *Service) CreateWatcher(ctx context.Context, req *connect.Request[filesystem.CreateWatcherRequest]) (*connect.Response[filesystem.CreateWatcherResponse], error) {
	_, path, err := s.resolve(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	w, err := newWatch(watchOptions{
		path:               path,
		recursive:          req.Msg.GetRecursive(),
		includeEntry:       req.Msg.GetIncludeEntry(),
		allowNetworkMounts: req.Msg.GetAllowNetworkMounts(),
	})
	if err != nil {
		return nil, err
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		w.close()
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("watcher id: %w", err))
	}
	id := "w" + hex.EncodeToString(b[:])
	pw := &pollWatcher{w: w, done: make(chan struct{})}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.close()
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("envd is shutting down"))
	}
	s.watchers[id] = pw
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer close(pw.done)
		pw.run()
	}()
	s.log.DebugContext(ctx, "watcher created", "watcher_id", id, "path", path)
	return connect.NewResponse(&filesystem.CreateWatcherResponse{WatcherId: id}), nil
}

// GetWatcherEvents returns and clears a watcher's buffered events.
func (s *Service) GetWatcherEvents(ctx context.Context, req *connect.Request[filesystem.GetWatcherEventsRequest]) (*connect.Response[filesystem.GetWatcherEventsResponse], error) {
	pw, err := s.watcher(req.Msg.GetWatcherId())
	if err != nil {
		return nil, err
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.err != nil {
		return nil, connect.NewError(connect.CodeInternal, pw.err)
	}
	events := pw.events
	pw.events = nil
	return connect.NewResponse(&filesystem.GetWatcherEventsResponse{Events: events}), nil
}

// RemoveWatcher stops a watcher and forgets it.
func (s *Service) RemoveWatcher(ctx context.Context, req *connect.Request[filesystem.RemoveWatcherRequest]) (*connect.Response[filesystem.RemoveWatcherResponse], error) {
	id := req.Msg.GetWatcherId()
	s.mu.Lock()
	pw, ok := s.watchers[id]
	delete(s.watchers, id)
	s.mu.Unlock()
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("watcher %q not found", id))
	}
	pw.stop()
	return connect.NewResponse(&filesystem.RemoveWatcherResponse{}), nil
}

func (s *Service) watcher(id string) (*pollWatcher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pw, ok := s.watchers[id]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("watcher %q not found", id))
	}
	return pw, nil
}

// run buffers events until the watch is closed or fails.
func (pw *pollWatcher) run() {
	for {
		select {
		case ev, ok := <-pw.w.fw.Events:
			if !ok {
				return
			}
			if out := pw.w.handle(ev); len(out) > 0 {
				pw.append(out)
			}
		case err, ok := <-pw.w.fw.Errors:
			if !ok {
				return
			}
			pw.mu.Lock()
			pw.err = fmt.Errorf("watch %s: %w", pw.w.root, err)
			pw.mu.Unlock()
			return
		}
	}
}

func (pw *pollWatcher) append(evs []*filesystem.FilesystemEvent) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.events = append(pw.events, evs...)
	if over := len(pw.events) - maxBufferedEvents; over > 0 {
		// Reslicing is amortized: the next append that grows the slice
		// copies only the kept events and frees the dropped ones.
		clear(pw.events[:over])
		pw.events = pw.events[over:]
	}
}

// stop closes the watch and waits for the reading goroutine.
func (pw *pollWatcher) stop() {
	pw.w.close()
	<-pw.done
}
