package process

import (
	"context"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// Start spawns a process and streams its events. The process outlives the
// stream; Connect-Timeout-Ms also bounds the process's lifetime (docs/envd.md).
func (s *Service) Start(ctx context.Context, req *connect.Request[process.StartRequest], stream *connect.ServerStream[process.StartResponse]) error {
	lifetime, err := lifetimeFrom(req.Header())
	if err != nil {
		return err
	}
	u, err := s.resolveUser(req.Header())
	if err != nil {
		return err
	}
	p, err := s.spawn(spawnRequest{
		user:     u,
		config:   req.Msg.GetProcess(),
		pty:      req.Msg.Pty,
		stdin:    req.Msg.Stdin == nil || *req.Msg.Stdin,
		tag:      req.Msg.Tag,
		lifetime: lifetime,
	})
	if err != nil {
		return err
	}
	s.log.Debug("process started", "pid", p.pid, "cmd", req.Msg.GetProcess().GetCmd(), "user", u.Name)
	send := func(ev *process.ProcessEvent) error { return stream.Send(&process.StartResponse{Event: ev}) }
	if err := send(startEvent(p.pid)); err != nil {
		return err
	}
	// Output was attached before the process ran, so reading from offset 0
	// loses nothing.
	return follow(ctx, p, followOpts{keepalive: keepaliveInterval(req.Header()), lifetimeIsDeadline: true, hold: true}, send)
}
