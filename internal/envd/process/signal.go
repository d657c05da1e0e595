package process

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/api/envd/process"
)

// SendSignal sends SIGTERM or SIGKILL to a process's group. Afterwards its
// output stops being forwarded once it is reaped, so end is not held up by
// descendants that keep its pipes open.
func (s *Service) SendSignal(_ context.Context, req *connect.Request[process.SendSignalRequest]) (*connect.Response[process.SendSignalResponse], error) {
	var sig unix.Signal
	switch v := req.Msg.GetSignal(); v {
	case process.Signal_SIGNAL_SIGTERM:
		sig = unix.SIGTERM
	case process.Signal_SIGNAL_SIGKILL:
		sig = unix.SIGKILL
	case process.Signal_SIGNAL_UNSPECIFIED:
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("signal is required"))
	default:
		return nil, connect.NewError(connect.CodeUnimplemented, fmt.Errorf("signal %v is not supported; use SIGNAL_SIGTERM or SIGNAL_SIGKILL", v))
	}
	p, err := s.find(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, err
	}
	s.signal(p, sig, false)
	return connect.NewResponse(&process.SendSignalResponse{}), nil
}
