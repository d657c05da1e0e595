package process

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/api/envd/process"
)

// Update resizes a process's terminal (the process gets SIGWINCH).
func (s *Service) Update(_ context.Context, req *connect.Request[process.UpdateRequest]) (*connect.Response[process.UpdateResponse], error) {
	p, err := s.find(req.Msg.GetProcess(), false)
	if err != nil {
		return nil, err
	}
	size := req.Msg.GetPty().GetSize()
	if size == nil {
		return connect.NewResponse(&process.UpdateResponse{}), nil
	}
	if !p.isPTY {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("process %d has no pty to resize", p.pid))
	}
	if err := p.resize(uint16(size.GetCols()), uint16(size.GetRows())); err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("resize pty of process %d: %w", p.pid, err))
	}
	return connect.NewResponse(&process.UpdateResponse{}), nil
}

// resize sets the terminal size through the master without taking it out of
// non-blocking mode (pty.Setsize would, via File.Fd).
func (p *proc) resize(cols, rows uint16) error {
	rc, err := p.tty.SyscallConn()
	if err != nil {
		return err
	}
	var ioctlErr error
	if err := rc.Control(func(fd uintptr) {
		ioctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: cols, Row: rows})
	}); err != nil {
		return err
	}
	if errors.Is(ioctlErr, unix.EBADF) {
		return errors.New("process has exited")
	}
	return ioctlErr
}
