package rpc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/api/hostagent/hostagent/v1/hostagentv1connect"
)

// drain reads a server stream to its end and returns its error.
func drain[T any](st *connect.ServerStreamForClient[T], err error) error {
	if err != nil {
		return err
	}
	defer st.Close()
	for st.Receive() {
	}
	return st.Err()
}

func TestInvalidRequestsChangeNothing(t *testing.T) {
	h := newHarness(t, false)
	id := runningID
	pid := func(p uint32) *v1.KillProcessRequest_Pid { return &v1.KillProcessRequest_Pid{Pid: p} }
	tag := func(s string) *v1.KillProcessRequest_Tag { return &v1.KillProcessRequest_Tag{Tag: s} }
	type call func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error
	unary := func(f func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error)) call {
		return func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			_, err := f(ctx, c)
			return err
		}
	}
	create := func(m *v1.CreateSandboxRequest) call {
		return unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.CreateSandbox(ctx, connect.NewRequest(m))
		})
	}
	exec := func(m *v1.ExecRequest) call {
		return unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.Exec(ctx, connect.NewRequest(m))
		})
	}
	kill := func(m *v1.KillProcessRequest) call {
		return unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.KillProcess(ctx, connect.NewRequest(m))
		})
	}
	pty := func(m *v1.PtyAttachRequest) call {
		return func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			return drain(c.PtyAttach(ctx, connect.NewRequest(m)))
		}
	}
	long := strings.Repeat("a", 65)
	cases := map[string]call{
		"create: empty id":       create(&v1.CreateSandboxRequest{}),
		"create: wrong prefix":   create(&v1.CreateSandboxRequest{SandboxId: "sb-0k4xq2m9d8e7r6t5y4u3i2o1p"}),
		"create: short id":       create(&v1.CreateSandboxRequest{SandboxId: "cl-0k4xq2m9d8e7r6t5y4u3i2o1"}),
		"create: upper case id":  create(&v1.CreateSandboxRequest{SandboxId: "cl-0K4XQ2M9D8E7R6T5Y4U3I2O1P"}),
		"create: vcpus":          create(&v1.CreateSandboxRequest{SandboxId: id, Vcpus: 65}),
		"create: negative vcpus": create(&v1.CreateSandboxRequest{SandboxId: id, Vcpus: -1}),
		"create: memory low":     create(&v1.CreateSandboxRequest{SandboxId: id, MemoryMb: 127}),
		"create: memory high":    create(&v1.CreateSandboxRequest{SandboxId: id, MemoryMb: 262145}),
		"create: disk low":       create(&v1.CreateSandboxRequest{SandboxId: id, DiskSizeMb: 255}),
		"create: disk high":      create(&v1.CreateSandboxRequest{SandboxId: id, DiskSizeMb: 1048577}),
		"create: timeout":        create(&v1.CreateSandboxRequest{SandboxId: id, TimeoutSec: -1}),
		"create: template path":  create(&v1.CreateSandboxRequest{SandboxId: id, TemplateId: "../x"}),
		"create: team path":      create(&v1.CreateSandboxRequest{SandboxId: id, TeamId: "a/b"}),
		"create: user":           create(&v1.CreateSandboxRequest{SandboxId: id, DefaultUser: "a:b"}),
		"create: env name":       create(&v1.CreateSandboxRequest{SandboxId: id, DefaultEnv: map[string]string{"A=B": "c"}}),
		"resume: bad id": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.ResumeSandbox(ctx, connect.NewRequest(&v1.ResumeSandboxRequest{SandboxId: "x"}))
		}),
		"pause: bad id": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.PauseSandbox(ctx, connect.NewRequest(&v1.PauseSandboxRequest{SandboxId: "cl-"}))
		}),
		"destroy: bad id": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.DestroySandbox(ctx, connect.NewRequest(&v1.DestroySandboxRequest{}))
		}),
		"snapshot: no template": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.CreateSnapshot(ctx, connect.NewRequest(&v1.CreateSnapshotRequest{SandboxId: id}))
		}),
		"delete tpl: no template": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.DeleteSnapshot(ctx, connect.NewRequest(&v1.DeleteSnapshotRequest{TeamId: "t"}))
		}),
		"metrics: bad range": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.GetSandboxMetrics(ctx, connect.NewRequest(&v1.GetSandboxMetricsRequest{SandboxId: id, Range: 9}))
		}),
		"exec: bad id":           exec(&v1.ExecRequest{SandboxId: "cl-x", Cmd: "true"}),
		"exec: no cmd":           exec(&v1.ExecRequest{SandboxId: id}),
		"exec: negative timeout": exec(&v1.ExecRequest{SandboxId: id, Cmd: "true", TimeoutSec: -5}),
		"exec: bad env":          exec(&v1.ExecRequest{SandboxId: id, Cmd: "true", Envs: map[string]string{"": "x"}}),
		"exec stream: no cmd": func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			return drain(c.ExecStream(ctx, connect.NewRequest(&v1.ExecRequest{SandboxId: id})))
		},
		"background: bad tag": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.StartBackground(ctx, connect.NewRequest(&v1.StartBackgroundRequest{SandboxId: id, Cmd: "sleep", Tag: "-x"}))
		}),
		"background: long tag": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.StartBackground(ctx, connect.NewRequest(&v1.StartBackgroundRequest{SandboxId: id, Cmd: "sleep", Tag: long}))
		}),
		"list procs: bad id": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.ListProcesses(ctx, connect.NewRequest(&v1.ListProcessesRequest{SandboxId: "cl-ABC"}))
		}),
		"kill: SIGHUP":      kill(&v1.KillProcessRequest{SandboxId: id, Selector: pid(5), Signal: "SIGHUP"}),
		"kill: number":      kill(&v1.KillProcessRequest{SandboxId: id, Selector: pid(5), Signal: "9"}),
		"kill: no selector": kill(&v1.KillProcessRequest{SandboxId: id}),
		"kill: pid 0":       kill(&v1.KillProcessRequest{SandboxId: id, Selector: pid(0)}),
		"kill: bad tag":     kill(&v1.KillProcessRequest{SandboxId: id, Selector: tag("a b")}),
		"kill: bad id":      kill(&v1.KillProcessRequest{SandboxId: "nope", Selector: pid(5)}),
		"connect: no selector": func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			return drain(c.ConnectProcess(ctx, connect.NewRequest(&v1.ConnectProcessRequest{SandboxId: id})))
		},
		"pty: no tag":        pty(&v1.PtyAttachRequest{SandboxId: id, Cmd: "sh", Cols: 80, Rows: 24}),
		"pty: zero cols":     pty(&v1.PtyAttachRequest{SandboxId: id, Tag: "t", Cmd: "sh", Rows: 24}),
		"pty: big rows":      pty(&v1.PtyAttachRequest{SandboxId: id, Tag: "t", Cmd: "sh", Cols: 80, Rows: 1001}),
		"pty reattach: dims": pty(&v1.PtyAttachRequest{SandboxId: id, Tag: "t", Cols: 5000, Rows: 10}),
		"pty: bad id":        pty(&v1.PtyAttachRequest{SandboxId: "cl-1", Tag: "t", Cmd: "sh", Cols: 80, Rows: 24}),
		"pty input: no tag": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.PtySendInput(ctx, connect.NewRequest(&v1.PtySendInputRequest{SandboxId: id, Data: []byte("x")}))
		}),
		"pty resize: 0 rows": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.PtyResize(ctx, connect.NewRequest(&v1.PtyResizeRequest{SandboxId: id, Tag: "t", Cols: 80}))
		}),
		"pty resize: 1001": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.PtyResize(ctx, connect.NewRequest(&v1.PtyResizeRequest{SandboxId: id, Tag: "t", Cols: 1001, Rows: 5}))
		}),
		"pty kill: bad tag": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.PtyKill(ctx, connect.NewRequest(&v1.PtyKillRequest{SandboxId: id, Tag: "a/b"}))
		}),
		"write: no path": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.WriteFile(ctx, connect.NewRequest(&v1.WriteFileRequest{SandboxId: id}))
		}),
		"read: NUL path": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: id, Path: "a\x00b"}))
		}),
		"list dir: no path": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.ListDir(ctx, connect.NewRequest(&v1.ListDirRequest{SandboxId: id}))
		}),
		"mkdir: bad id": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.MakeDir(ctx, connect.NewRequest(&v1.MakeDirRequest{SandboxId: "x", Path: "/tmp/x"}))
		}),
		"remove: no path": unary(func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) (any, error) {
			return c.RemovePath(ctx, connect.NewRequest(&v1.RemovePathRequest{SandboxId: id}))
		}),
		"read stream: no path": func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			return drain(c.ReadFileStream(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: id})))
		},
		"write stream: chunk first": func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			st := c.WriteFileStream(ctx)
			_ = st.Send(&v1.WriteFileStreamRequest{Part: &v1.WriteFileStreamRequest_Chunk{Chunk: []byte("x")}})
			_, err := st.CloseAndReceive()
			return err
		},
		"write stream: bad meta": func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			st := c.WriteFileStream(ctx)
			_ = st.Send(&v1.WriteFileStreamRequest{Part: &v1.WriteFileStreamRequest_Meta{Meta: &v1.WriteFileMeta{SandboxId: "x", Path: "/tmp/x"}}})
			_, err := st.CloseAndReceive()
			return err
		},
		"write stream: empty": func(ctx context.Context, c hostagentv1connect.HostAgentServiceClient) error {
			_, err := c.WriteFileStream(ctx).CloseAndReceive()
			return err
		},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := c(ctxT(t, 10*time.Second), h.client)
			wantCode(t, err, connect.CodeInvalidArgument)
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Message() == "" {
				t.Fatalf("no message: %v", err)
			}
		})
	}
	if calls, _ := h.fake.recorded(); len(calls) != 0 {
		t.Fatalf("invalid requests reached the agent: %v", calls)
	}
}
