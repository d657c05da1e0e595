package process

import (
	"context"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// Connect attaches to a running process: start, output produced from now
// on, end. With ReplayFromHeader it first replays the retained output from
// that offset and may attach to a retained exited process.
func (s *Service) Connect(ctx context.Context, req *connect.Request[process.ConnectRequest], stream *connect.ServerStream[process.ConnectResponse]) error {
	from, replay, err := replayFrom(req.Header())
	if err != nil {
		return err
	}
	p, err := s.find(req.Msg.GetProcess(), replay)
	if err != nil {
		return err
	}
	p.mu.Lock()
	cursor := p.log.end // standard: no replay
	if replay {
		cursor = min(from, p.log.end) // beyond the end: live output only
	}
	p.mu.Unlock()
	send := func(ev *process.ProcessEvent) error { return stream.Send(&process.ConnectResponse{Event: ev}) }
	if err := send(startEvent(p.pid)); err != nil {
		return err
	}
	return follow(ctx, p, followOpts{cursor: cursor, offsets: replay, keepalive: keepaliveInterval(req.Header())}, send)
}
