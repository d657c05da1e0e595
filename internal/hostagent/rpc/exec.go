package rpc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/wrenn/wrenn/api/envd/process"
	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// defaultExecTimeout bounds Exec and ExecStream without timeout_sec.
const defaultExecTimeout = 30 * time.Second

// errNoEnd is an envd process stream that ended without the process's end.
var errNoEnd = errors.New("envd ended the process stream before the process ended")

func checkExec(m *v1.ExecRequest) error {
	return firstErr(
		checkSandboxID(m.GetSandboxId()), checkCmd(m.GetCmd(), m.GetArgs()), checkEnv("envs", m.GetEnvs()),
		checkCwd(m.GetCwd()), checkTimeout(m.GetTimeoutSec()), checkUser("user", m.GetUser()),
	)
}

// Exec runs a command to completion and returns its output (at most
// maxExecOutput bytes of stdout and of stderr; the rest is dropped) and
// exit code. At timeout_sec (default 30 s) envd kills the command and Exec
// fails with DeadlineExceeded.
func (s *Server) Exec(ctx context.Context, req *connect.Request[v1.ExecRequest]) (*connect.Response[v1.ExecResponse], error) {
	m := req.Msg
	if err := checkExec(m); err != nil {
		return nil, err
	}
	var stdout, stderr capped
	var end *process.ProcessEvent_EndEvent
	err := s.run(ctx, m, events{
		data: func(d *process.ProcessEvent_DataEvent) error {
			switch o := d.GetOutput().(type) {
			case *process.ProcessEvent_DataEvent_Stdout:
				stdout.add(o.Stdout)
			case *process.ProcessEvent_DataEvent_Stderr:
				stderr.add(o.Stderr)
			case *process.ProcessEvent_DataEvent_Pty:
				stdout.add(o.Pty)
			}
			return nil
		},
		end: func(e *process.ProcessEvent_EndEvent) error { end = e; return nil },
	})
	if err != nil {
		return nil, err
	}
	if stdout.dropped > 0 || stderr.dropped > 0 {
		s.log.InfoContext(ctx, "exec output truncated", "capsule_id", m.GetSandboxId(),
			"stdout_dropped", stdout.dropped, "stderr_dropped", stderr.dropped, "limit", maxExecOutput)
	}
	return connect.NewResponse(&v1.ExecResponse{Stdout: stdout.b, Stderr: stderr.b, ExitCode: end.GetExitCode()}), nil
}

// ExecStream runs a command and streams start, output and end. The command
// is killed when the caller cancels, and by envd at timeout_sec (default
// 30 s), which fails the stream with DeadlineExceeded.
func (s *Server) ExecStream(ctx context.Context, req *connect.Request[v1.ExecRequest], stream *connect.ServerStream[v1.ExecStreamResponse]) error {
	m := req.Msg
	if err := checkExec(m); err != nil {
		return err
	}
	return s.run(ctx, m, events{
		start: func(pid uint32) error {
			return stream.Send(&v1.ExecStreamResponse{Event: &v1.ExecStreamResponse_Start{Start: &v1.ProcessStart{Pid: pid}}})
		},
		data: func(d *process.ProcessEvent_DataEvent) error {
			return stream.Send(&v1.ExecStreamResponse{Event: &v1.ExecStreamResponse_Data{Data: processData(d, false)}})
		},
		end: func(e *process.ProcessEvent_EndEvent) error {
			return stream.Send(&v1.ExecStreamResponse{Event: &v1.ExecStreamResponse_End{End: processEnd(e)}})
		},
	})
}

// run runs an Exec request's command in its capsule with its timeout and
// hands its events to h. A command whose caller goes away (or whose stream
// breaks) before it ends is killed: envd would otherwise keep it running
// until the deadline. Errors are Connect errors.
func (s *Server) run(ctx context.Context, m *v1.ExecRequest, h events) error {
	id := m.GetSandboxId()
	c, info, done, err := s.envd(ctx, id)
	if err != nil {
		return err
	}
	defer done()
	timeout := defaultExecTimeout
	if m.GetTimeoutSec() > 0 {
		timeout = time.Duration(m.GetTimeoutSec()) * time.Second
	}
	// The deadline travels to envd as Connect-Timeout-Ms, which envd turns
	// into the process's lifetime.
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, pid, err := startStream(rctx, c, &process.StartRequest{
		Process: processConfig(m.GetCmd(), m.GetArgs(), m.GetEnvs(), m.GetCwd()),
		Stdin:   proto.Bool(false),
	}, pick(m.GetUser(), info.DefaultUser))
	if err != nil {
		return s.execErr(ctx, rctx, id, timeout, err)
	}
	if h.start != nil {
		if err := h.start(pid); err != nil {
			_ = st.Close()
			s.kill(ctx, c, pid)
			return s.fail(ctx, "exec", id, err)
		}
	}
	ended, err := follow(st, events{data: h.data, end: h.end})
	if !ended {
		s.kill(ctx, c, pid)
		if err == nil {
			err = errNoEnd
		}
	}
	if err != nil {
		return s.execErr(ctx, rctx, id, timeout, err)
	}
	return nil
}

// execErr reports a failed command run: DeadlineExceeded when its own
// timeout (not the caller's) ran out.
func (s *Server) execErr(ctx, rctx context.Context, id string, timeout time.Duration, err error) error {
	if ctx.Err() == nil && (rctx.Err() != nil || connect.CodeOf(err) == connect.CodeDeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded,
			fmt.Errorf("command timed out after %s and was killed", timeout))
	}
	return s.fail(ctx, "exec", id, err)
}

// StartBackground starts a detached command and returns once envd knows
// its pid. The envd call carries no deadline, so the process lives on after
// this call returns (until it exits or is killed).
func (s *Server) StartBackground(ctx context.Context, req *connect.Request[v1.StartBackgroundRequest]) (*connect.Response[v1.StartBackgroundResponse], error) {
	m := req.Msg
	if err := firstErr(
		checkSandboxID(m.GetSandboxId()), checkCmd(m.GetCmd(), m.GetArgs()), checkEnv("envs", m.GetEnvs()),
		checkCwd(m.GetCwd()), checkUser("user", m.GetUser()), checkOptionalTag(m.GetTag()),
	); err != nil {
		return nil, err
	}
	id := m.GetSandboxId()
	c, info, done, err := s.envd(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	sreq := &process.StartRequest{
		Process: processConfig(m.GetCmd(), m.GetArgs(), m.GetEnvs(), m.GetCwd()),
		Stdin:   proto.Bool(false),
	}
	if tag := m.GetTag(); tag != "" {
		if err := s.refuseRunningTag(ctx, c, id, tag); err != nil {
			return nil, err
		}
		sreq.Tag = proto.String(tag)
	}
	dctx, cancel := detached(ctx)
	defer cancel()
	st, pid, err := startStream(dctx, c, sreq, pick(m.GetUser(), info.DefaultUser))
	if err != nil {
		return nil, s.fail(ctx, "start background", id, err)
	}
	// Dropping the stream leaves the process running: it had no deadline.
	_ = st.Close()
	return connect.NewResponse(&v1.StartBackgroundResponse{Pid: pid, Tag: m.GetTag()}), nil
}

// refuseRunningTag fails with AlreadyExists when a live process has tag, so
// that a tag names one process.
func (s *Server) refuseRunningTag(ctx context.Context, c *envdclient.Client, id, tag string) error {
	running, err := tagRunning(ctx, c, tag)
	if err != nil {
		return s.fail(ctx, "list processes", id, err)
	}
	if running {
		return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("a process with tag %q is already running", tag))
	}
	return nil
}

func checkOptionalTag(tag string) error {
	if tag == "" {
		return nil
	}
	return checkTag(tag)
}

// capped collects output up to maxExecOutput bytes and counts the rest.
type capped struct {
	b       []byte
	dropped int64
}

func (c *capped) add(p []byte) {
	n := min(len(p), maxExecOutput-len(c.b))
	c.b = append(c.b, p[:n]...)
	c.dropped += int64(len(p) - n)
}

// processData maps an envd data event; terminal output counts as stdout.
func processData(d *process.ProcessEvent_DataEvent, offsets bool) *v1.ProcessData {
	pd := &v1.ProcessData{}
	switch o := d.GetOutput().(type) {
	case *process.ProcessEvent_DataEvent_Stdout:
		pd.Output = &v1.ProcessData_Stdout{Stdout: o.Stdout}
	case *process.ProcessEvent_DataEvent_Stderr:
		pd.Output = &v1.ProcessData_Stderr{Stderr: o.Stderr}
	case *process.ProcessEvent_DataEvent_Pty:
		pd.Output = &v1.ProcessData_Stdout{Stdout: o.Pty}
	}
	if offsets {
		pd.EndOffset = d.GetEndOffset()
	}
	return pd
}

func processEnd(e *process.ProcessEvent_EndEvent) *v1.ProcessEnd {
	return &v1.ProcessEnd{ExitCode: e.GetExitCode(), Error: e.GetError()}
}
