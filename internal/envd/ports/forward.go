package ports

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// dialTimeout bounds the connection to the loopback target.
const dialTimeout = 5 * time.Second

// forwarder listens on one external address:port and proxies every accepted
// connection to target. Its goroutines are counted in the run's WaitGroup
// and in its own, so stop can wait for exactly its goroutines.
type forwarder struct {
	log    *slog.Logger
	target netip.AddrPort
	ln     net.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

func startForwarder(ctx context.Context, runWG *sync.WaitGroup, log *slog.Logger, listen, target netip.AddrPort) (*forwarder, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp4", listen.String())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &forwarder{
		log:    log.With("listen", listen.String(), "target", target.String()),
		target: target,
		ln:     ln,
		cancel: cancel,
		conns:  map[net.Conn]struct{}{},
	}
	f.spawn(runWG, func() { f.accept(ctx, runWG) })
	return f, nil
}

// spawn runs fn in a goroutine counted by both wait groups. The caller must
// itself be counted (or be the run loop), so the counters are never zero here.
func (f *forwarder) spawn(runWG *sync.WaitGroup, fn func()) {
	runWG.Add(1)
	f.wg.Add(1)
	go func() {
		defer runWG.Done()
		defer f.wg.Done()
		fn()
	}()
}

// stop closes the listener and every proxied connection and waits for all
// of the forwarder's goroutines.
func (f *forwarder) stop() {
	f.cancel()
	_ = f.ln.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	clear(f.conns)
	f.mu.Unlock()
	f.wg.Wait()
}

// track registers c so stop closes it; it reports false (and closes c) when
// the forwarder is already stopping.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		_ = c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	_ = c.Close()
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

func (f *forwarder) accept(ctx context.Context, runWG *sync.WaitGroup) {
	backoff := 5 * time.Millisecond
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds and similar: back off instead of spinning.
			f.log.Debug("accept failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !f.track(c) {
			return
		}
		f.spawn(runWG, func() { f.proxy(ctx, runWG, c) })
	}
}

// proxy copies both directions between in and a new connection to the
// target, passing half-closes through, until both directions end.
func (f *forwarder) proxy(ctx context.Context, runWG *sync.WaitGroup, in net.Conn) {
	defer f.untrack(in)
	d := net.Dialer{Timeout: dialTimeout}
	out, err := d.DialContext(ctx, "tcp", f.target.String())
	if err != nil {
		f.log.Debug("dial target failed", "err", err)
		return
	}
	if !f.track(out) {
		return
	}
	defer f.untrack(out)
	done := make(chan struct{})
	f.spawn(runWG, func() {
		defer close(done)
		pipe(out, in)
	})
	pipe(in, out)
	<-done
}

// pipe copies src to dst; at EOF it half-closes dst, on error it closes both
// so the other direction ends too.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if cw.CloseWrite() == nil {
				return
			}
		}
	}
	_ = dst.Close()
	_ = src.Close()
}
