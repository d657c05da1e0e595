package process

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// SendInput writes to a process's stdin pipe or terminal.
func (s *Service) SendInput(_ context.Context, req *connect.Request[process.SendInputRequest]) (*connect.Response[process.SendInputResponse], error) {
	p, err := s.find(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, err
	}
	if err := p.write(req.Msg.GetInput()); err != nil {
		return nil, err
	}
	return connect.NewResponse(&process.SendInputResponse{}), nil
}

// StreamInput writes a stream of inputs to one process: start first, then
// data in order; keepalives are ignored.
func (s *Service) StreamInput(_ context.Context, stream *connect.ClientStream[process.StreamInputRequest]) (*connect.Response[process.StreamInputResponse], error) {
	var p *proc
	for stream.Receive() {
		switch ev := stream.Msg().GetEvent().(type) {
		case *process.StreamInputRequest_Start:
			if p != nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("stream input: start sent twice"))
			}
			var err error
			if p, err = s.find(ev.Start.GetProcess(), false); err != nil {
				return nil, err
			}
		case *process.StreamInputRequest_Data:
			if p == nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("stream input: data before start"))
			}
			if err := p.write(ev.Data.GetInput()); err != nil {
				return nil, err
			}
		case *process.StreamInputRequest_Keepalive:
		default:
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("stream input: empty event"))
		}
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(&process.StreamInputResponse{}), nil
}

// CloseStdin closes a process's stdin pipe (EOF); idempotent.
func (s *Service) CloseStdin(_ context.Context, req *connect.Request[process.CloseStdinRequest]) (*connect.Response[process.CloseStdinResponse], error) {
	p, err := s.find(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, err
	}
	if p.isPTY {
		return nil, connect.NewError(connect.CodeInternal,
			fmt.Errorf("process %d has a pty and no stdin pipe; send Ctrl-D (0x04) as pty input instead", p.pid))
	}
	p.mu.Lock()
	f := p.stdin
	p.stdin = nil
	p.mu.Unlock()
	if f != nil {
		if err := f.Close(); err != nil {
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("close stdin of process %d: %w", p.pid, err))
		}
	}
	return connect.NewResponse(&process.CloseStdinResponse{}), nil
}

// write sends one input to p, checking it matches p's kind of input.
func (p *proc) write(in *process.ProcessInput) error {
	var data []byte
	switch v := in.GetInput().(type) {
	case *process.ProcessInput_Stdin:
		if p.isPTY {
			return connect.NewError(connect.CodeInternal, fmt.Errorf("process %d has a pty: send input.pty", p.pid))
		}
		data = v.Stdin
	case *process.ProcessInput_Pty:
		if !p.isPTY {
			return connect.NewError(connect.CodeInternal, fmt.Errorf("process %d has no pty: send input.stdin", p.pid))
		}
		data = v.Pty
	default:
		return connect.NewError(connect.CodeInvalidArgument, errors.New("input.stdin or input.pty is required"))
	}
	f := p.tty
	if !p.isPTY {
		p.mu.Lock()
		f = p.stdin
		p.mu.Unlock()
		if f == nil {
			return connect.NewError(connect.CodeInternal, fmt.Errorf("stdin of process %d is not open", p.pid))
		}
	}
	if len(data) == 0 {
		return nil
	}
	// Outside p.mu: a child that does not read may block the write, and
	// CloseStdin or the end of the process must still be able to close f.
	if _, err := f.Write(data); err != nil {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("write input to process %d: %w", p.pid, err))
	}
	return nil
}
