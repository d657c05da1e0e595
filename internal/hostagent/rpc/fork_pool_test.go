package rpc

import (
	"context"
	"reflect"
	"testing"

	"connectrpc.com/connect"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/hostagent/capsules"
)

func TestForkAndPoolPassThrough(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	other := "cl-" + "1234567890123456789012345"
	res, err := h.client.ForkSandbox(ctx, connect.NewRequest(&v1.ForkSandboxRequest{
		SandboxId: runningID, Targets: []*v1.ForkTarget{{SandboxId: other, EnvdAccessToken: "tok"}},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if sb := res.Msg.GetSandboxes(); len(sb) != 1 || sb[0].GetSandboxId() != other || sb[0].GetStatus() != v1.SandboxStatus_SANDBOX_STATUS_RUNNING {
		t.Fatalf("fork response %v", res.Msg)
	}
	if _, err := h.client.SetTemplatePool(ctx, connect.NewRequest(&v1.SetTemplatePoolRequest{TemplateId: "base", Size: 2, AllowInternet: true})); err != nil {
		t.Fatal(err)
	}
	calls, args := h.fake.recorded()
	if !reflect.DeepEqual(calls, []string{"Fork", "SetNamedPool"}) {
		t.Fatalf("calls %v", calls)
	}
	if got := args[0].([]any)[1]; !reflect.DeepEqual(got, []capsules.ForkTarget{{ID: other, EnvdAccessToken: "tok"}}) {
		t.Fatalf("fork targets %v", got)
	}
	if got := args[1].([]any)[0]; !reflect.DeepEqual(got, capsules.PoolSpec{TemplateID: "base", Size: 2, AllowInternet: true}) {
		t.Fatalf("pool spec %+v", got)
	}
}

func TestForkAndPoolRejectBadInput(t *testing.T) {
	h := newHarness(t, false)
	ctx := context.Background()
	tooMany := make([]*v1.ForkTarget, capsules.MaxForks+1)
	for i := range tooMany {
		tooMany[i] = &v1.ForkTarget{SandboxId: runningID}
	}
	for name, req := range map[string]*v1.ForkSandboxRequest{
		"bad source": {SandboxId: "x", Targets: []*v1.ForkTarget{{SandboxId: runningID}}},
		"no targets": {SandboxId: runningID},
		"too many":   {SandboxId: runningID, Targets: tooMany},
		"bad target": {SandboxId: runningID, Targets: []*v1.ForkTarget{{SandboxId: "nope"}}},
	} {
		if _, err := h.client.ForkSandbox(ctx, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, req := range map[string]*v1.SetTemplatePoolRequest{
		"no template":  {Size: 1},
		"bad template": {TemplateId: "../x", Size: 1},
		"negative":     {TemplateId: "base", Size: -1},
		"too big":      {TemplateId: "base", Size: capsules.MaxPoolSize + 1},
		"bad memory":   {TemplateId: "base", Size: 1, MemoryMb: 1},
	} {
		if _, err := h.client.SetTemplatePool(ctx, connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	if calls, _ := h.fake.recorded(); len(calls) != 0 {
		t.Fatalf("rejected calls reached the agent: %v", calls)
	}
}
