package guest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/coder/websocket"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
)

// PTY defaults (docs/api.md).
const (
	defaultPTYCmd  = "/bin/bash"
	defaultPTYCols = 80
	defaultPTYRows = 24
	defaultTERM    = "xterm-256color"
)

const (
	// maxCoalesce bounds the input bytes merged into one host call.
	maxCoalesce = 64 << 10
	// ptyQueue is how many input/resize/kill operations may wait for their host call.
	ptyQueue = 64
	// touchEvery throttles the activity PTY input records in the database.
	touchEvery = 5 * time.Second
)

// ptyMessage is a client message of a PTY socket.
type ptyMessage struct {
	Type string            `json:"type"`
	Cmd  string            `json:"cmd"`
	Args []string          `json:"args"`
	Cols int64             `json:"cols"`
	Rows int64             `json:"rows"`
	Envs map[string]string `json:"envs"`
	Cwd  string            `json:"cwd"`
	User string            `json:"user"`
	Tag  string            `json:"tag"`
	Data string            `json:"data"`
}

// Server frames of a PTY socket.
type (
	ptyStarted struct {
		Type        string `json:"type"` // "started"
		Tag         string `json:"tag"`
		PID         uint32 `json:"pid"`
		Reconnected bool   `json:"reconnected,omitempty"`
	}
	ptyOutput struct {
		Type string `json:"type"` // "output"
		Data string `json:"data"` // base64
	}
	ptyPing struct {
		Type string `json:"type"` // "ping"
	}
)

// ptyOp is one host call a client message asks for: input, resize or kill.
type ptyOp struct {
	kind       string
	data       []byte
	cols, rows uint32
}

// pty serves GET (WS) …/pty (docs/api.md).
func (s *Service) pty(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := capsules.ParseID(r.PathValue("id")); err != nil {
			apierr.Write(w, r, err)
			return
		}
		ws, t, ok := s.accept(w, r, sc)
		if !ok {
			return
		}
		defer ws.finish()
		p := &ptySession{s: s, ws: ws, t: t}
		p.run()
	}
}

// ptySession is one PTY socket: it attaches to a PTY of the capsule (new or by tag) and relays
// output, input, resizes and kills until the PTY exits, the client leaves or goes quiet.
type ptySession struct {
	s         *Service
	ws        *socket
	t         capsules.Target
	tag       string
	idle      *time.Timer
	lastTouch time.Time
}

func (p *ptySession) run() {
	ws := p.ws
	p.idle = time.NewTimer(p.s.idleTimeout)
	defer p.idle.Stop()

	// The first protocol message: start or connect.
	var first []byte
	select {
	case msg, ok := <-ws.in:
		if !ok {
			return
		}
		first = msg
	case <-p.idle.C:
		p.inactive()
		return
	case <-ws.ctx.Done():
		return
	}
	p.resetIdle()
	req, reconnect, err := p.attachRequest(first)
	if err != nil {
		ws.fail(err)
		return
	}
	st, err := p.t.Agent.PtyAttach(ws.ctx, connect.NewRequest(req))
	if err != nil {
		ws.fail(p.attachError(err, reconnect))
		return
	}
	events := follow(ws, st)

	ops := make(chan ptyOp, ptyQueue)
	ws.spawn(func() { p.hostCalls(ops) })
	ping := time.NewTicker(p.s.pingInterval)
	defer ping.Stop()

	established := false
	in := ws.in
	for {
		select {
		case msg, ok := <-in:
			if !ok {
				return // the client left; the PTY keeps running
			}
			p.resetIdle()
			op, ok := p.clientOp(msg)
			if !ok {
				continue
			}
			select {
			case ops <- op:
			case <-ws.ctx.Done():
				return
			}
		case ev, ok := <-events.C:
			if !ok {
				err := events.Err()
				if !established {
					if err == nil {
						err = apierr.AgentError("the host agent ended the session before the PTY started")
					}
					ws.fail(p.attachError(err, reconnect))
					return
				}
				if err == nil {
					err = apierr.AgentError("the host agent ended the session before the PTY exited")
				}
				ws.failAgent(err)
				return
			}
			switch e := ev.GetEvent().(type) {
			case *hav1.PtyAttachResponse_Started:
				established = true
				if err := ws.send(ptyStarted{Type: "started", Tag: p.tag, PID: e.Started.GetPid(), Reconnected: e.Started.GetReconnected()}); err != nil {
					return
				}
			case *hav1.PtyAttachResponse_Output:
				if err := ws.send(ptyOutput{Type: "output", Data: base64.StdEncoding.EncodeToString(e.Output.GetData())}); err != nil {
					return
				}
			case *hav1.PtyAttachResponse_Exited:
				if err := ws.send(exitFrame{Type: "exit", ExitCode: e.Exited.GetExitCode()}); err == nil {
					ws.close()
				}
				return
			}
		case <-ping.C:
			if err := ws.send(ptyPing{Type: "ping"}); err != nil {
				return
			}
		case <-p.idle.C:
			p.inactive()
			return
		}
	}
}

// attachRequest turns the first protocol message into the agent's PtyAttach request.
func (p *ptySession) attachRequest(first []byte) (*hav1.PtyAttachRequest, bool, error) {
	var m ptyMessage
	if err := json.Unmarshal(first, &m); err != nil || (m.Type != "start" && m.Type != "connect") {
		return nil, false, apierr.InvalidRequest("first message must be type 'start' or 'connect'")
	}
	if m.Type == "connect" {
		if m.Tag == "" {
			return nil, true, apierr.InvalidRequest("connect requires a 'tag' field")
		}
		if !validTag(m.Tag) {
			return nil, true, apierr.InvalidRequest(tagMessage(m.Tag))
		}
		p.tag = m.Tag
		req := &hav1.PtyAttachRequest{SandboxId: p.t.PublicID, Tag: m.Tag}
		if m.Cols > 0 && m.Rows > 0 {
			req.Cols, req.Rows = dim(m.Cols), dim(m.Rows)
		}
		return req, true, nil
	}
	if m.Tag == "" {
		m.Tag = newTag("pty-")
	} else if !validTag(m.Tag) {
		return nil, false, apierr.InvalidRequest(tagMessage(m.Tag))
	}
	if m.Cmd == "" {
		m.Cmd = defaultPTYCmd
	}
	if m.Cols <= 0 {
		m.Cols = defaultPTYCols
	}
	if m.Rows <= 0 {
		m.Rows = defaultPTYRows
	}
	envs := make(map[string]string, len(m.Envs)+1)
	for k, v := range m.Envs {
		envs[k] = v
	}
	if _, ok := envs["TERM"]; !ok {
		envs["TERM"] = defaultTERM
	}
	p.tag = m.Tag
	return &hav1.PtyAttachRequest{
		SandboxId: p.t.PublicID, Tag: m.Tag, Cmd: m.Cmd, Args: m.Args, Cols: dim(m.Cols), Rows: dim(m.Rows),
		Envs: envs, Cwd: m.Cwd, User: m.User,
	}, false, nil
}

// dim converts a terminal dimension; values past uint32 saturate (the agent refuses them).
func dim(v int64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

// attachError is the fatal error of a PtyAttach that failed before the PTY was established: conflict
// for a tag in use and not_found for an unknown tag keep the agent's mapping; other start failures
// say "failed to start pty: …".
func (p *ptySession) attachError(err error, reconnect bool) error {
	e := apierr.FromAgent(p.ws.ctx, err)
	if reconnect || e.Code == apierr.CodeConflict {
		return e
	}
	out := *e
	out.Message = "failed to start pty: " + e.Message
	return &out
}

// clientOp handles a client message after the first: input, resize and kill become host calls; pong
// only counts as activity; anything else is ignored.
func (p *ptySession) clientOp(msg []byte) (ptyOp, bool) {
	var m ptyMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		_ = p.ws.send(errorFrame(apierr.InvalidRequest("invalid JSON message")))
		return ptyOp{}, false
	}
	switch m.Type {
	case "input":
		b, err := base64.StdEncoding.DecodeString(m.Data)
		if err != nil || len(b) == 0 {
			return ptyOp{}, false // invalid base64 is dropped silently
		}
		if now := time.Now(); now.Sub(p.lastTouch) >= touchEvery {
			p.lastTouch = now
			p.s.res.Touch(p.ws.ctx, p.t.Capsule.ID)
		}
		return ptyOp{kind: "input", data: b}, true
	case "resize":
		if m.Cols <= 0 || m.Rows <= 0 {
			return ptyOp{}, false
		}
		return ptyOp{kind: "resize", cols: dim(m.Cols), rows: dim(m.Rows)}, true
	case "kill":
		return ptyOp{kind: "kill"}, true
	}
	return ptyOp{}, false
}

// hostCalls runs the queued operations in order, one host call each with a 5 s limit; consecutive
// inputs waiting together are merged into one call. A failed call is a non-fatal error frame.
func (p *ptySession) hostCalls(ops <-chan ptyOp) {
	ctx := p.ws.ctx
	var next *ptyOp
	for {
		var op ptyOp
		if next != nil {
			op, next = *next, nil
		} else {
			select {
			case op = <-ops:
			case <-ctx.Done():
				return
			}
		}
		if op.kind == "input" {
		merge:
			for len(op.data) < maxCoalesce {
				select {
				case o := <-ops:
					if o.kind != "input" || len(op.data)+len(o.data) > maxCoalesce {
						next = &o
						break merge
					}
					op.data = append(op.data, o.data...)
				default:
					break merge
				}
			}
		}
		if err := p.call(ctx, op); err != nil {
			if ctx.Err() != nil {
				return
			}
			_ = p.ws.send(errorFrame(apierr.FromAgent(p.ws.ctx, err)))
		}
	}
}

func (p *ptySession) call(ctx context.Context, op ptyOp) error {
	ctx, cancel := context.WithTimeout(ctx, hostCallTimeout)
	defer cancel()
	id, tag := p.t.PublicID, p.tag
	var err error
	switch op.kind {
	case "input":
		_, err = p.t.Agent.PtySendInput(ctx, connect.NewRequest(&hav1.PtySendInputRequest{SandboxId: id, Tag: tag, Data: op.data}))
	case "resize":
		_, err = p.t.Agent.PtyResize(ctx, connect.NewRequest(&hav1.PtyResizeRequest{SandboxId: id, Tag: tag, Cols: op.cols, Rows: op.rows}))
	case "kill":
		_, err = p.t.Agent.PtyKill(ctx, connect.NewRequest(&hav1.PtyKillRequest{SandboxId: id, Tag: tag}))
	}
	return err
}

func (p *ptySession) resetIdle() {
	if !p.idle.Stop() {
		select {
		case <-p.idle.C:
		default:
		}
	}
	p.idle.Reset(p.s.idleTimeout)
}

// inactive ends a quiet socket (docs/api.md): error inactivity_timeout, close 4000. The PTY keeps running.
func (p *ptySession) inactive() {
	e := apierr.New(http.StatusRequestTimeout, apierr.CodeInactivityTimeout, "no client message for "+seconds(p.s.idleTimeout))
	_ = p.ws.send(apierr.ErrorFrame(e, true))
	_ = p.ws.conn.Close(websocket.StatusCode(apierr.CloseInactivityTimeout), apierr.MessageInactivityClosed)
}

// seconds formats d as the contract does ("120s"); sub-second durations keep their unit.
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
