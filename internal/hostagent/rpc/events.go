package rpc

import (
	"context"
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/wrenn/wrenn/api/envd/process"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// killTimeout bounds the SIGKILL sent for a process its caller abandoned.
const killTimeout = 5 * time.Second

// replayFromHeader opts an envd Process.Connect call into output replay
// from a byte offset (docs/envd.md, Wrenn extensions).
const replayFromHeader = "X-Wrenn-Replay-From"

// events receives the events of one envd process stream; nil handlers
// ignore their event. Keepalives are always dropped.
type events struct {
	start func(pid uint32) error
	data  func(d *process.ProcessEvent_DataEvent) error
	end   func(e *process.ProcessEvent_EndEvent) error
}

// eventMsg is envd's StartResponse or ConnectResponse.
type eventMsg[T any] interface {
	*T
	GetEvent() *process.ProcessEvent
}

// follow delivers st's events to h until the stream ends, and reports
// whether the process's end arrived.
func follow[T any, M eventMsg[T]](st *connect.ServerStreamForClient[T], h events) (ended bool, err error) {
	defer st.Close()
	for st.Receive() {
		switch ev := M(st.Msg()).GetEvent().GetEvent().(type) {
		case *process.ProcessEvent_Start:
			if h.start != nil {
				err = h.start(ev.Start.GetPid())
			}
		case *process.ProcessEvent_Data:
			if h.data != nil {
				err = h.data(ev.Data)
			}
		case *process.ProcessEvent_End:
			ended = true
			if h.end != nil {
				err = h.end(ev.End)
			}
		}
		if err != nil || ended {
			return ended, err
		}
	}
	return ended, st.Err()
}

// processConfig is envd's description of a process to start.
func processConfig(cmd string, args []string, envs map[string]string, cwd string) *process.ProcessConfig {
	pc := &process.ProcessConfig{Cmd: cmd, Args: args, Envs: envs}
	if cwd != "" {
		pc.Cwd = proto.String(cwd)
	}
	return pc
}

// kill sends SIGKILL to pid's process group, also after ctx ended; a
// process that is already gone is not an error.
func (s *Server) kill(ctx context.Context, c *envdclient.Client, pid uint32) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	_, err := c.Process.SendSignal(kctx, connect.NewRequest(&process.SendSignalRequest{
		Process: pidSelector(pid), Signal: process.Signal_SIGNAL_SIGKILL,
	}))
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		s.log.WarnContext(ctx, "kill abandoned process", "pid", pid, "error", err)
	}
}

func pidSelector(pid uint32) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Pid{Pid: pid}}
}

func tagSelector(tag string) *process.ProcessSelector {
	return &process.ProcessSelector{Selector: &process.ProcessSelector_Tag{Tag: tag}}
}

// connectProcess attaches to a process (running, or exited and retained)
// and replays its output from offset before following it live.
func connectProcess(ctx context.Context, c *envdclient.Client, sel *process.ProcessSelector, offset uint64) (*connect.ServerStreamForClient[process.ConnectResponse], error) {
	req := connect.NewRequest(&process.ConnectRequest{Process: sel})
	req.Header().Set(replayFromHeader, strconv.FormatUint(offset, 10))
	return c.Process.Connect(ctx, req)
}

// tagRunning reports whether a live process in the capsule has tag.
func tagRunning(ctx context.Context, c *envdclient.Client, tag string) (bool, error) {
	res, err := c.Process.List(ctx, connect.NewRequest(&process.ListRequest{}))
	if err != nil {
		return false, err
	}
	for _, p := range res.Msg.GetProcesses() {
		if p.Tag != nil && *p.Tag == tag {
			return true, nil
		}
	}
	return false, nil
}

// errNoStart is envd ending a stream before it named the process.
var errNoStart = errors.New("envd ended the process stream before the start event")

// startStream starts a process and returns its stream and pid once envd
// has sent the start event.
func startStream(ctx context.Context, c *envdclient.Client, sreq *process.StartRequest, user string) (*connect.ServerStreamForClient[process.StartResponse], uint32, error) {
	req := connect.NewRequest(sreq)
	asUser(req.Header(), user)
	st, err := c.Process.Start(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	for st.Receive() {
		if start := st.Msg().GetEvent().GetStart(); start != nil {
			return st, start.GetPid(), nil
		}
	}
	err = st.Err()
	_ = st.Close()
	if err == nil {
		err = errNoStart
	}
	return nil, 0, err
}
