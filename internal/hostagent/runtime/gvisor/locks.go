package gvisor

import (
	"context"
	"sync"
)

// idLocks serializes operations per capsule id; different ids proceed
// concurrently. Entries live only while someone holds or waits for them.
type idLocks struct {
	mu sync.Mutex
	m  map[string]*idLock
}

type idLock struct {
	ch   chan struct{} // holds a token while the lock is taken
	refs int           // holders and waiters
}

// lock takes the lock of id, or gives up when ctx ends. The returned
// function releases it.
func (l *idLocks) lock(ctx context.Context, id string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*idLock{}
	}
	e := l.m[id]
	if e == nil {
		e = &idLock{ch: make(chan struct{}, 1)}
		l.m[id] = e
	}
	e.refs++
	l.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
		return func() {
			<-e.ch
			l.release(id, e)
		}, nil
	case <-ctx.Done():
		l.release(id, e)
		return nil, ctx.Err()
	}
}

func (l *idLocks) release(id string, e *idLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, id)
	}
}
