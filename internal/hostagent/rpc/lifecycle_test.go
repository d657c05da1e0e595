package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/hostagent/images"
	"github.com/wrenn/wrenn/internal/hostagent/network"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

func TestLifecyclePassesThrough(t *testing.T) {
	h := newHarness(t, false)
	ctx := ctxT(t, 30*time.Second)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.fake.info = capsules.Info{ID: runningID, Status: capsules.StatusRunning, HostIP: "10.11.0.2", Metadata: map[string]string{"k": "v"}}

	// Create with zero resources gets the defaults.
	res, err := h.client.CreateSandbox(ctx, connect.NewRequest(&v1.CreateSandboxRequest{
		SandboxId: runningID, TimeoutSec: 300, TeamId: "team-1", TemplateId: "minimal",
		DefaultUser: "user", DefaultEnv: map[string]string{"A": "1"}, AllowInternet: true,
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := &v1.CreateSandboxResponse{SandboxId: runningID, Status: v1.SandboxStatus_SANDBOX_STATUS_RUNNING, HostIp: "10.11.0.2", Metadata: map[string]string{"k": "v"}}
	if res.Msg.String() != want.String() {
		t.Fatalf("create response %v, want %v", res.Msg, want)
	}
	_, args := h.fake.recorded()
	wantParams := capsules.CreateParams{
		ID: runningID, VCPUs: 1, MemoryMB: 512, TimeoutSec: 300, DiskMB: 2048, TeamID: "team-1",
		TemplateID: "minimal", DefaultUser: "user", DefaultEnv: map[string]string{"A": "1"}, AllowInternet: true,
	}
	if got := args[0].([]any)[0]; !reflect.DeepEqual(got, wantParams) {
		t.Fatalf("create params %+v, want %+v", got, wantParams)
	}

	// Explicit resources are kept.
	if _, err := h.client.CreateSandbox(ctx, connect.NewRequest(&v1.CreateSandboxRequest{
		SandboxId: runningID, Vcpus: 4, MemoryMb: 4096, DiskSizeMb: 10240,
	})); err != nil {
		t.Fatal(err)
	}
	_, args = h.fake.recorded()
	if p := args[1].([]any)[0].(capsules.CreateParams); p.VCPUs != 4 || p.MemoryMB != 4096 || p.DiskMB != 10240 {
		t.Fatalf("create params %+v", p)
	}

	h.fake.info.Status = capsules.StatusPaused
	rres, err := h.client.ResumeSandbox(ctx, connect.NewRequest(&v1.ResumeSandboxRequest{
		SandboxId: runningID, TimeoutSec: 60, DefaultUser: "root", DefaultEnv: map[string]string{"B": "2"}, KernelVersion: "6.1",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if rres.Msg.GetStatus() != v1.SandboxStatus_SANDBOX_STATUS_PAUSED {
		t.Fatalf("resume status %v", rres.Msg.GetStatus())
	}

	for _, call := range []func() error{
		func() error {
			_, err := h.client.PauseSandbox(ctx, connect.NewRequest(&v1.PauseSandboxRequest{SandboxId: runningID}))
			return err
		},
		func() error {
			_, err := h.client.DestroySandbox(ctx, connect.NewRequest(&v1.DestroySandboxRequest{SandboxId: runningID}))
			return err
		},
		func() error {
			_, err := h.client.PingSandbox(ctx, connect.NewRequest(&v1.PingSandboxRequest{SandboxId: runningID}))
			return err
		},
	} {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}

	h.fake.list = []capsules.Info{
		{ID: runningID, Status: capsules.StatusRunning, TemplateID: "base", TeamID: "t", VCPUs: 2, MemoryMB: 1024,
			DiskMB: 4096, TimeoutSec: 30, HostIP: "10.0.0.2", CreatedAt: created, LastActiveAt: created.Add(time.Minute)},
		{ID: pausedID, Status: capsules.StatusPaused},
		{ID: unknownID, Status: capsules.StatusResuming},
	}
	h.fake.autoPaused = []string{pausedID}
	lres, err := h.client.ListSandboxes(ctx, connect.NewRequest(&v1.ListSandboxesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	sb := lres.Msg.GetSandboxes()
	if len(sb) != 3 || sb[0].GetStatus() != v1.SandboxStatus_SANDBOX_STATUS_RUNNING ||
		sb[1].GetStatus() != v1.SandboxStatus_SANDBOX_STATUS_PAUSED ||
		sb[2].GetStatus() != v1.SandboxStatus_SANDBOX_STATUS_UNSPECIFIED ||
		sb[0].GetVcpus() != 2 || sb[0].GetMemoryMb() != 1024 || sb[0].GetDiskSizeMb() != 4096 ||
		sb[0].GetTimeoutSec() != 30 || sb[0].GetHostIp() != "10.0.0.2" || sb[0].GetTemplateId() != "base" ||
		!sb[0].GetCreatedAt().AsTime().Equal(created) || !sb[0].GetLastActiveAt().AsTime().Equal(created.Add(time.Minute)) ||
		sb[1].GetCreatedAt() != nil {
		t.Fatalf("list: %v", lres.Msg)
	}
	if got := lres.Msg.GetAutoPausedSandboxIds(); len(got) != 1 || got[0] != pausedID {
		t.Fatalf("auto paused %v", got)
	}

	h.fake.size = 12345
	sres, err := h.client.CreateSnapshot(ctx, connect.NewRequest(&v1.CreateSnapshotRequest{SandboxId: runningID, TeamId: "team-1", TemplateId: "tpl-1"}))
	if err != nil || sres.Msg.GetSizeBytes() != 12345 {
		t.Fatalf("snapshot %v %v", sres, err)
	}
	fres, err := h.client.FlattenRootfs(ctx, connect.NewRequest(&v1.CreateSnapshotRequest{SandboxId: runningID, TemplateId: "tpl-2"}))
	if err != nil || fres.Msg.GetSizeBytes() != 12345 {
		t.Fatalf("flatten %v %v", fres, err)
	}
	if _, err := h.client.DeleteSnapshot(ctx, connect.NewRequest(&v1.DeleteSnapshotRequest{TeamId: "team-1", TemplateId: "tpl-1"})); err != nil {
		t.Fatal(err)
	}

	at := time.Unix(1700000000, 0)
	h.fake.points = []capsules.MetricPoint{{At: at, CPUPct: 12.5, MemBytes: 100, DiskBytes: 200}}
	for rng, want := range map[v1.MetricsRange]capsules.MetricsRange{
		v1.MetricsRange_METRICS_RANGE_UNSPECIFIED: capsules.Range10m,
		v1.MetricsRange_METRICS_RANGE_10M:         capsules.Range10m,
		v1.MetricsRange_METRICS_RANGE_2H:          capsules.Range2h,
		v1.MetricsRange_METRICS_RANGE_24H:         capsules.Range24h,
	} {
		mres, err := h.client.GetSandboxMetrics(ctx, connect.NewRequest(&v1.GetSandboxMetricsRequest{SandboxId: runningID, Range: rng}))
		if err != nil {
			t.Fatal(err)
		}
		p := mres.Msg.GetPoints()
		if len(p) != 1 || p[0].GetTs() != at.Unix() || p[0].GetCpuPct() != 12.5 || p[0].GetMemBytes() != 100 || p[0].GetDiskBytes() != 200 {
			t.Fatalf("metrics %v", mres.Msg)
		}
		_, args := h.fake.recorded()
		if got := args[len(args)-1].([]any)[1]; got != want {
			t.Fatalf("range %v went to the agent as %v, want %v", rng, got, want)
		}
	}
	h.fake.tiers = [3][]capsules.MetricPoint{{{At: at}}, {{At: at}, {At: at}}, nil}
	flres, err := h.client.FlushSandboxMetrics(ctx, connect.NewRequest(&v1.FlushSandboxMetricsRequest{SandboxId: runningID}))
	if err != nil || len(flres.Msg.GetPoints_10M()) != 1 || len(flres.Msg.GetPoints_2H()) != 2 || len(flres.Msg.GetPoints_24H()) != 0 {
		t.Fatalf("flush %v %v", flres, err)
	}
	if _, err := h.client.Terminate(ctx, connect.NewRequest(&v1.TerminateRequest{})); err != nil {
		t.Fatal(err)
	}

	calls, args := h.fake.recorded()
	wantCalls := []string{"Create", "Create", "Resume", "Pause", "Destroy", "Ping", "List", "Snapshot", "Flatten",
		"DeleteTemplate", "Metrics", "Metrics", "Metrics", "Metrics", "FlushMetrics", "Terminate"}
	if !reflect.DeepEqual(calls, wantCalls) {
		t.Fatalf("calls %v\nwant  %v", calls, wantCalls)
	}
	wantResume := capsules.ResumeParams{ID: runningID, TimeoutSec: 60, DefaultUser: "root", DefaultEnv: map[string]string{"B": "2"}}
	if got := args[2].([]any)[0]; !reflect.DeepEqual(got, wantResume) {
		t.Fatalf("resume params %+v", got)
	}
	for i, want := range map[int][]any{
		3: {runningID}, 4: {runningID}, 5: {runningID},
		7: {runningID, "team-1", "tpl-1"}, 8: {runningID, "", "tpl-2"}, 9: {"team-1", "tpl-1"},
		14: {runningID},
	} {
		if !reflect.DeepEqual(args[i], want) {
			t.Fatalf("%s args %v, want %v", calls[i], args[i], want)
		}
	}
}

func TestAgentErrorsMapToCodes(t *testing.T) {
	h := newHarness(t, false)
	ctx := ctxT(t, 30*time.Second)
	for err, code := range map[error]connect.Code{
		capsules.ErrNotFound:                       connect.CodeNotFound,
		fmt.Errorf("x: %w", capsules.ErrExists):    connect.CodeAlreadyExists,
		capsules.ErrInvalid:                        connect.CodeInvalidArgument,
		fmt.Errorf("busy: %w", capsules.ErrState):  connect.CodeFailedPrecondition,
		capsules.ErrTemplateGone:                   connect.CodeNotFound,
		context.DeadlineExceeded:                   connect.CodeDeadlineExceeded,
		errors.New("disk on fire"):                 connect.CodeInternal,
		&envdclient.Error{Status: 507}:             connect.CodeResourceExhausted,
		connect.NewError(connect.CodeAborted, nil): connect.CodeAborted,
	} {
		h.fake.err = err
		_, cerr := h.client.CreateSandbox(ctx, connect.NewRequest(&v1.CreateSandboxRequest{SandboxId: runningID}))
		wantCode(t, cerr, code)
		_, perr := h.client.PauseSandbox(ctx, connect.NewRequest(&v1.PauseSandboxRequest{SandboxId: runningID}))
		wantCode(t, perr, code)
		_, lerr := h.client.ListSandboxes(ctx, connect.NewRequest(&v1.ListSandboxesRequest{}))
		wantCode(t, lerr, code)
	}
	h.fake.err = nil

	// Envd-backed calls get the agent's refusal too.
	_, err := h.client.Exec(ctx, connect.NewRequest(&v1.ExecRequest{SandboxId: unknownID, Cmd: "true"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: pausedID, Path: "/etc/hostname"}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	st, err := h.client.PtyAttach(ctx, connect.NewRequest(&v1.PtyAttachRequest{SandboxId: pausedID, Tag: "t"}))
	if err == nil {
		for st.Receive() {
		}
		err = st.Err()
		_ = st.Close()
	}
	wantCode(t, err, connect.CodeFailedPrecondition)
}

func TestToConnect(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code connect.Code
	}{
		{&envdclient.Error{Status: 400}, connect.CodeInvalidArgument},
		{fmt.Errorf("upload: %w", &envdclient.Error{Status: 401}), connect.CodePermissionDenied},
		{&envdclient.Error{Status: 403}, connect.CodePermissionDenied},
		{&envdclient.Error{Status: 404}, connect.CodeNotFound},
		{&envdclient.Error{Status: 507}, connect.CodeResourceExhausted},
		{&envdclient.Error{Status: 500}, connect.CodeInternal},
		{&envdclient.Error{Status: 502}, connect.CodeInternal},
		{connect.NewError(connect.CodeNotFound, errors.New("process with pid 7 not found")), connect.CodeNotFound},
		{fmt.Errorf("list: %w", connect.NewError(connect.CodeUnauthenticated, errors.New("u"))), connect.CodeUnauthenticated},
		{context.Canceled, connect.CodeCanceled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, connect.CodeUnavailable},
		{fmt.Errorf("%w: x", capsules.ErrTemplateGone), connect.CodeNotFound},
		{errors.New("boom"), connect.CodeInternal},
		// Every error kind, bare and wrapped, from the runtime or the core.
		{runtime.ErrNotFound, connect.CodeNotFound},
		{fmt.Errorf("pause capsule cl-x: %w", runtime.ErrNotFound), connect.CodeNotFound},
		{runtime.ErrExists, connect.CodeAlreadyExists},
		{fmt.Errorf("create capsule cl-x: %w", runtime.ErrExists), connect.CodeAlreadyExists},
		{runtime.ErrInvalid, connect.CodeInvalidArgument},
		{fmt.Errorf("%w: metrics range 9", capsules.ErrInvalid), connect.CodeInvalidArgument},
		{runtime.ErrState, connect.CodeFailedPrecondition},
		{fmt.Errorf("stats: container is stopped: %w", runtime.ErrState), connect.CodeFailedPrecondition},
		// Errors of the packages below the core are of a kind where one fits.
		{fmt.Errorf("create: capsule cl-x: %w", network.ErrNotFound), connect.CodeNotFound},
		{fmt.Errorf("create: netns wrn-x: %w", network.ErrExists), connect.CodeAlreadyExists},
		{fmt.Errorf("create: %w: %q", images.ErrUnknown, "nope"), connect.CodeNotFound},
		{fmt.Errorf("create: capsule cl-x: %w in 10.11.0.0/16", network.ErrFull), connect.CodeInternal},
		{runtime.NewError(runtime.ErrState, "special"), connect.CodeFailedPrecondition},
	} {
		if got := toConnect(tc.err).Code(); got != tc.code {
			t.Errorf("%v → %v, want %v", tc.err, got, tc.code)
		}
	}
	// A Connect error from envd keeps its message but not its HTTP metadata.
	in := connect.NewError(connect.CodeNotFound, errors.New("process with tag x not found"))
	in.Meta().Set("Content-Type", "application/grpc")
	out := toConnect(in)
	if out.Message() != "process with tag x not found" || len(out.Meta()) != 0 {
		t.Fatalf("mapped %q meta %v", out.Message(), out.Meta())
	}
}
