package rpc

import (
	"context"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
)

// ListProcesses lists the capsule's processes; with include_exited also the
// exited ones envd still retains.
func (s *Server) ListProcesses(ctx context.Context, req *connect.Request[v1.ListProcessesRequest]) (*connect.Response[v1.ListProcessesResponse], error) {
	id := req.Msg.GetSandboxId()
	if err := checkSandboxID(id); err != nil {
		return nil, err
	}
	c, _, done, err := s.envd(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	// Always ask for the extended records: they carry started_at for running
	// processes too.
	res, err := c.Process.List(ctx, connect.NewRequest(&process.ListRequest{IncludeExited: true}))
	if err != nil {
		return nil, s.fail(ctx, "list processes", id, err)
	}
	out := &v1.ListProcessesResponse{}
	for _, p := range res.Msg.GetProcesses() {
		pi := &v1.ProcessInfo{
			Pid: p.GetPid(), Tag: p.GetTag(), Cmd: p.GetConfig().GetCmd(), Args: p.GetConfig().GetArgs(),
			Status: "running", StartedAt: p.GetStartedAt(),
		}
		if end := p.GetEnd(); end != nil {
			if !req.Msg.GetIncludeExited() {
				continue
			}
			code := end.GetExitCode()
			pi.Status, pi.ExitCode, pi.ExitedAt = "exited", &code, p.GetExitedAt()
		}
		out.Processes = append(out.Processes, pi)
	}
	return connect.NewResponse(out), nil
}

// selector maps a pid-or-tag selector of the API to envd's.
func selector(pid *uint32, tag *string) (*process.ProcessSelector, error) {
	switch {
	case pid != nil:
		if *pid == 0 {
			return nil, invalid("pid must not be 0")
		}
		return pidSelector(*pid), nil
	case tag != nil:
		if err := checkTag(*tag); err != nil {
			return nil, err
		}
		return tagSelector(*tag), nil
	default:
		return nil, invalid("pid or tag is required")
	}
}

func killSelector(m *v1.KillProcessRequest) (*process.ProcessSelector, error) {
	switch v := m.GetSelector().(type) {
	case *v1.KillProcessRequest_Pid:
		return selector(&v.Pid, nil)
	case *v1.KillProcessRequest_Tag:
		return selector(nil, &v.Tag)
	}
	return selector(nil, nil)
}

func connectSelector(m *v1.ConnectProcessRequest) (*process.ProcessSelector, error) {
	switch v := m.GetSelector().(type) {
	case *v1.ConnectProcessRequest_Pid:
		return selector(&v.Pid, nil)
	case *v1.ConnectProcessRequest_Tag:
		return selector(nil, &v.Tag)
	}
	return selector(nil, nil)
}

// KillProcess signals a process's group with SIGKILL (default) or SIGTERM.
func (s *Server) KillProcess(ctx context.Context, req *connect.Request[v1.KillProcessRequest]) (*connect.Response[v1.KillProcessResponse], error) {
	m := req.Msg
	var sig process.Signal
	switch m.GetSignal() {
	case "", "SIGKILL":
		sig = process.Signal_SIGNAL_SIGKILL
	case "SIGTERM":
		sig = process.Signal_SIGNAL_SIGTERM
	default:
		return nil, invalid("unsupported signal %q: use SIGKILL or SIGTERM", m.GetSignal())
	}
	sel, err := killSelector(m)
	if err := firstErr(checkSandboxID(m.GetSandboxId()), err); err != nil {
		return nil, err
	}
	if err := s.signal(ctx, m.GetSandboxId(), sel, sig); err != nil {
		return nil, err
	}
	return connect.NewResponse(&v1.KillProcessResponse{}), nil
}

func (s *Server) signal(ctx context.Context, id string, sel *process.ProcessSelector, sig process.Signal) error {
	c, _, done, err := s.envd(ctx, id)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.Process.SendSignal(ctx, connect.NewRequest(&process.SendSignalRequest{Process: sel, Signal: sig})); err != nil {
		return s.fail(ctx, "signal", id, err)
	}
	return nil
}

// ConnectProcess replays a process's retained output from offset, then
// follows it live until it ends. Data events carry end_offset, so a caller
// that reconnects asks for exactly what it has not seen. Disconnecting does
// not affect the process.
func (s *Server) ConnectProcess(ctx context.Context, req *connect.Request[v1.ConnectProcessRequest], stream *connect.ServerStream[v1.ConnectProcessResponse]) error {
	m := req.Msg
	sel, err := connectSelector(m)
	if err := firstErr(checkSandboxID(m.GetSandboxId()), err); err != nil {
		return err
	}
	id := m.GetSandboxId()
	c, _, done, err := s.envd(ctx, id)
	if err != nil {
		return err
	}
	defer done()
	st, err := connectProcess(ctx, c, sel, m.GetOffset())
	if err != nil {
		return s.fail(ctx, "connect process", id, err)
	}
	ended, err := follow(st, events{
		start: func(pid uint32) error {
			return stream.Send(&v1.ConnectProcessResponse{Event: &v1.ConnectProcessResponse_Start{Start: &v1.ProcessStart{Pid: pid}}})
		},
		data: func(d *process.ProcessEvent_DataEvent) error {
			return stream.Send(&v1.ConnectProcessResponse{Event: &v1.ConnectProcessResponse_Data{Data: processData(d, true)}})
		},
		end: func(e *process.ProcessEvent_EndEvent) error {
			return stream.Send(&v1.ConnectProcessResponse{Event: &v1.ConnectProcessResponse_End{End: processEnd(e)}})
		},
	})
	if err == nil && !ended {
		err = errNoEnd
	}
	if err != nil {
		return s.fail(ctx, "connect process", id, err)
	}
	return nil
}
