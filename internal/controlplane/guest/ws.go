package guest

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

// socket is an accepted, authenticated WebSocket of a resolved capsule with a goroutine reading the
// client's messages. Every goroutine of a socket ends by the time finish returns.
type socket struct {
	log    *slog.Logger
	conn   *websocket.Conn
	ctx    context.Context // ends when the handler ends
	cancel context.CancelFunc
	// in delivers the client's messages; it is closed when the client goes away.
	in <-chan []byte
	wg sync.WaitGroup
}

// accept upgrades and authenticates r (header credentials or the auth message, docs/api.md), then resolves
// the capsule (docs/api.md become a fatal error frame). Step 1 and the query parameters must have
// been checked before, as plain HTTP answers. ok=false means the request is answered.
func (s *Service) accept(w http.ResponseWriter, r *http.Request, sc scope) (*socket, capsules.Target, bool) {
	conn, id, ok := httpapi.AcceptWebSocket(w, r, sc.authn, sc.kind)
	if !ok {
		return nil, capsules.Target{}, false
	}
	ctx, cancel := context.WithCancel(r.Context())
	log := s.log.With("path", r.URL.Path, "request_id", apierr.RequestID(r.Context()))
	ws := &socket{log: log, conn: conn, ctx: ctx, cancel: cancel}
	t, err := s.target(ctx, sc, id, r.PathValue("id"))
	if err != nil {
		ws.fail(err)
		ws.finish()
		return nil, capsules.Target{}, false
	}
	in := make(chan []byte, 16)
	ws.in = in
	ws.spawn(func() {
		defer close(in)
		for {
			// A read whose context ends closes the connection; ctx ends only after finish closed it.
			_, b, err := conn.Read(ctx)
			if err != nil {
				return
			}
			select {
			case in <- b:
			case <-ctx.Done():
				return
			}
		}
	})
	return ws, t, true
}

// spawn runs f in a goroutine finish waits for.
func (ws *socket) spawn(f func()) {
	ws.wg.Add(1)
	go func() {
		defer ws.wg.Done()
		f()
	}()
}

// finish closes the connection (if still open), ends the socket's context and waits for its
// goroutines.
func (ws *socket) finish() {
	_ = ws.conn.CloseNow()
	ws.cancel()
	ws.wg.Wait()
}

// send writes one JSON frame.
func (ws *socket) send(v any) error { return httpapi.WriteFrame(ws.ctx, ws.conn, v) }

// fail sends err as a fatal error frame and closes the socket (1000, or 1011 for server failures,
// which are logged).
func (ws *socket) fail(err error) {
	if e := apierr.From(err); e.Status >= http.StatusInternalServerError {
		ws.log.WarnContext(ws.ctx, "websocket session failed", "status", e.Status, "code", e.Code, "err", err)
	}
	httpapi.CloseWithError(ws.ctx, ws.conn, err)
}

// failAgent is fail for an error of a host-agent call (docs/api.md).
func (ws *socket) failAgent(err error) { ws.fail(apierr.FromAgent(ws.ctx, err)) }

// close ends the session normally (1000).
func (ws *socket) close() { _ = ws.conn.Close(websocket.StatusNormalClosure, "") }

// serverStream is the client side of a host-agent server stream.
type serverStream[T any] interface {
	Receive() bool
	Msg() *T
	Err() error
	Close() error
}

// feed delivers the messages of a host-agent stream from a goroutine of a socket.
type feed[T any] struct {
	// C delivers the messages; it is closed when the stream ends (or the socket finishes).
	C   <-chan *T
	err error
}

// Err is the stream's error (nil: it ended normally); valid once C is closed.
func (f *feed[T]) Err() error { return f.err }

// follow starts delivering st's messages.
func follow[T any](ws *socket, st serverStream[T]) *feed[T] {
	ch := make(chan *T)
	f := &feed[T]{C: ch}
	ws.spawn(func() {
		defer close(ch)
		defer st.Close()
		for st.Receive() {
			select {
			case ch <- st.Msg():
			case <-ws.ctx.Done():
				f.err = ws.ctx.Err()
				return
			}
		}
		f.err = st.Err()
	})
	return f
}

// processEvent is a message of a host-agent process stream (ExecStream, ConnectProcess).
type processEvent interface {
	GetStart() *hav1.ProcessStart
	GetData() *hav1.ProcessData
	GetEnd() *hav1.ProcessEnd
}

// pumpOptions shape how pump renders a process stream and what it does with client messages.
type pumpOptions struct {
	tag     string // named in the start frame
	base64  bool   // output as base64 rather than text
	offsets bool   // output frames carry the byte offset after them
	// onStart runs once the start frame is sent; onMessage gets each client message (nil: ignored).
	onStart   func(pid uint32)
	onMessage func(msg []byte)
}

// pump relays a host-agent process stream to ws as start, stdout/stderr and exit frames, then closes
// the socket normally. It returns when the process exited, the client went away, a frame could not be
// sent, or the stream ended before the exit (a fatal error frame).
func pump[T any, P interface {
	*T
	processEvent
}](ws *socket, st serverStream[T], o pumpOptions) {
	events := follow(ws, st)
	for {
		select {
		case msg, ok := <-ws.in:
			if !ok {
				return
			}
			if o.onMessage != nil {
				o.onMessage(msg)
			}
		case ev, ok := <-events.C:
			if !ok {
				err := events.Err()
				if err == nil {
					err = apierr.AgentError("the host agent ended the stream before the process exited")
				}
				ws.failAgent(err)
				return
			}
			e := P(ev)
			switch {
			case e.GetStart() != nil:
				pid := e.GetStart().GetPid()
				if err := ws.send(startFrame{Type: "start", PID: pid, Tag: o.tag}); err != nil {
					return
				}
				if o.onStart != nil {
					o.onStart(pid)
				}
			case e.GetData() != nil:
				if err := ws.send(dataFrame(e.GetData(), o.base64, o.offsets)); err != nil {
					return
				}
			case e.GetEnd() != nil:
				if err := ws.send(exitFrame{Type: "exit", ExitCode: e.GetEnd().GetExitCode()}); err == nil {
					ws.close()
				}
				return
			}
		}
	}
}

// errorFrame is a non-fatal error frame of err (docs/api.md).
func errorFrame(err error) apierr.Frame { return apierr.ErrorFrame(err, false) }
