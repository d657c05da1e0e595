package rpc

import (
	"context"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/wrenn/wrenn/api/envd/process"
	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

func checkPtyAttach(m *v1.PtyAttachRequest) error {
	errs := []error{checkSandboxID(m.GetSandboxId()), checkTag(m.GetTag())}
	if m.GetCmd() != "" {
		errs = append(errs,
			checkCmd(m.GetCmd(), m.GetArgs()), checkEnv("envs", m.GetEnvs()), checkCwd(m.GetCwd()),
			checkUser("user", m.GetUser()), checkPtySize(m.GetCols(), m.GetRows()))
	} else if m.GetCols() != 0 || m.GetRows() != 0 {
		errs = append(errs, checkPtySize(m.GetCols(), m.GetRows()))
	}
	return firstErr(errs...)
}

// PtyAttach starts a terminal session (cmd set) or reattaches to the one
// with tag (cmd empty), replaying its scrollback first; on reattach a
// non-zero size resizes the terminal. Disconnecting leaves the session
// running for a later reattach.
func (s *Server) PtyAttach(ctx context.Context, req *connect.Request[v1.PtyAttachRequest], stream *connect.ServerStream[v1.PtyAttachResponse]) error {
	m := req.Msg
	if err := checkPtyAttach(m); err != nil {
		return err
	}
	id := m.GetSandboxId()
	c, info, done, err := s.envd(ctx, id)
	if err != nil {
		return err
	}
	defer done()
	// No deadline reaches envd: on Start it would become the terminal's
	// lifetime.
	dctx, cancel := detached(ctx)
	defer cancel()

	started := func(pid uint32, reconnected bool) error {
		return stream.Send(&v1.PtyAttachResponse{Event: &v1.PtyAttachResponse_Started{
			Started: &v1.PtyStarted{Pid: pid, Tag: m.GetTag(), Reconnected: reconnected},
		}})
	}
	h := events{
		data: func(d *process.ProcessEvent_DataEvent) error {
			var b []byte
			switch o := d.GetOutput().(type) {
			case *process.ProcessEvent_DataEvent_Pty:
				b = o.Pty
			case *process.ProcessEvent_DataEvent_Stdout: // a tagged process without a terminal
				b = o.Stdout
			case *process.ProcessEvent_DataEvent_Stderr:
				b = o.Stderr
			}
			return stream.Send(&v1.PtyAttachResponse{Event: &v1.PtyAttachResponse_Output{Output: &v1.PtyOutput{Data: b}}})
		},
		end: func(e *process.ProcessEvent_EndEvent) error {
			return stream.Send(&v1.PtyAttachResponse{Event: &v1.PtyAttachResponse_Exited{Exited: &v1.PtyExited{ExitCode: e.GetExitCode()}}})
		},
	}

	var ended bool
	if m.GetCmd() != "" {
		if err := s.refuseRunningTag(ctx, c, id, m.GetTag()); err != nil {
			return err
		}
		st, pid, err := startStream(dctx, c, &process.StartRequest{
			Process: processConfig(m.GetCmd(), m.GetArgs(), m.GetEnvs(), m.GetCwd()),
			Pty:     &process.PTY{Size: &process.PTY_Size{Cols: m.GetCols(), Rows: m.GetRows()}},
			Tag:     proto.String(m.GetTag()),
		}, pick(m.GetUser(), info.DefaultUser))
		if err != nil {
			return s.fail(ctx, "pty start", id, err)
		}
		if err := started(pid, false); err != nil {
			_ = st.Close()
			return s.fail(ctx, "pty start", id, err)
		}
		ended, err = follow(st, h)
		if err != nil {
			return s.fail(ctx, "pty", id, err)
		}
	} else {
		st, err := connectProcess(dctx, c, tagSelector(m.GetTag()), 0)
		if err != nil {
			return s.fail(ctx, "pty reattach", id, err)
		}
		h.start = func(pid uint32) error {
			if m.GetCols() != 0 {
				if err := resize(dctx, c, m.GetTag(), m.GetCols(), m.GetRows()); err != nil {
					return err
				}
			}
			return started(pid, true)
		}
		ended, err = follow(st, h)
		if err != nil {
			return s.fail(ctx, "pty reattach", id, err)
		}
	}
	if !ended {
		return s.fail(ctx, "pty", id, errNoEnd)
	}
	return nil
}

// PtySendInput writes to a terminal.
func (s *Server) PtySendInput(ctx context.Context, req *connect.Request[v1.PtySendInputRequest]) (*connect.Response[v1.PtySendInputResponse], error) {
	m := req.Msg
	if err := firstErr(checkSandboxID(m.GetSandboxId()), checkTag(m.GetTag())); err != nil {
		return nil, err
	}
	c, _, done, err := s.envd(ctx, m.GetSandboxId())
	if err != nil {
		return nil, err
	}
	defer done()
	_, err = c.Process.SendInput(ctx, connect.NewRequest(&process.SendInputRequest{
		Process: tagSelector(m.GetTag()),
		Input:   &process.ProcessInput{Input: &process.ProcessInput_Pty{Pty: m.GetData()}},
	}))
	if err != nil {
		return nil, s.fail(ctx, "pty input", m.GetSandboxId(), err)
	}
	return connect.NewResponse(&v1.PtySendInputResponse{}), nil
}

// PtyResize changes a terminal's size.
func (s *Server) PtyResize(ctx context.Context, req *connect.Request[v1.PtyResizeRequest]) (*connect.Response[v1.PtyResizeResponse], error) {
	m := req.Msg
	if err := firstErr(checkSandboxID(m.GetSandboxId()), checkTag(m.GetTag()), checkPtySize(m.GetCols(), m.GetRows())); err != nil {
		return nil, err
	}
	c, _, done, err := s.envd(ctx, m.GetSandboxId())
	if err != nil {
		return nil, err
	}
	defer done()
	if err := resize(ctx, c, m.GetTag(), m.GetCols(), m.GetRows()); err != nil {
		return nil, s.fail(ctx, "pty resize", m.GetSandboxId(), err)
	}
	return connect.NewResponse(&v1.PtyResizeResponse{}), nil
}

func resize(ctx context.Context, c *envdclient.Client, tag string, cols, rows uint32) error {
	_, err := c.Process.Update(ctx, connect.NewRequest(&process.UpdateRequest{
		Process: tagSelector(tag),
		Pty:     &process.PTY{Size: &process.PTY_Size{Cols: cols, Rows: rows}},
	}))
	return err
}

// PtyKill kills a terminal's process group with SIGKILL.
func (s *Server) PtyKill(ctx context.Context, req *connect.Request[v1.PtyKillRequest]) (*connect.Response[v1.PtyKillResponse], error) {
	m := req.Msg
	if err := firstErr(checkSandboxID(m.GetSandboxId()), checkTag(m.GetTag())); err != nil {
		return nil, err
	}
	if err := s.signal(ctx, m.GetSandboxId(), tagSelector(m.GetTag()), process.Signal_SIGNAL_SIGKILL); err != nil {
		return nil, err
	}
	return connect.NewResponse(&v1.PtyKillResponse{}), nil
}
