package cp_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

func execEcho(t testing.TB, base string, cred cptest.Cred, id, word string) {
	t.Helper()
	res := cptest.Call(t, base, "POST", "/v1/sandboxes/"+id+"/exec", cred, map[string]any{"cmd": "/bin/sh", "args": []string{"-c", "echo " + word}})
	if res.Status != 200 {
		t.Fatalf("exec in %s: %d %s", id, res.Status, res.Body)
	}
	var out struct {
		Stdout   string `json:"stdout"`
		ExitCode int    `json:"exit_code"`
	}
	res.JSON(t, &out)
	if out.Stdout != word+"\n" || out.ExitCode != 0 {
		t.Fatalf("exec in %s: %s", id, res.Body)
	}
}

// TestTwoControlPlanesTwoHosts: two control planes share one database; two agents, each in its own
// network namespace, register over the API. Capsules spread over both hosts and are reachable through
// either control plane; killing a control plane loses nothing; killing an agent marks only its
// capsules missing, and they come back when it returns.
func TestTwoControlPlanesTwoHosts(t *testing.T) {
	p := platform.New(t, 2)
	a := p.AddHost(t, true)
	b := p.AddHost(t, true)
	key := cptest.Key(p.Key)

	var caps []platform.Capsule
	for i := range 4 {
		caps = append(caps, p.CreateCapsule(t, p.CPs[i%2].URL, key))
	}
	t.Cleanup(func() {
		for _, c := range caps {
			cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+c.ID, key, nil)
		}
	})
	byHost := map[string][]string{}
	for _, c := range caps {
		byHost[c.HostID] = append(byHost[c.HostID], c.ID)
	}
	if len(byHost[a.ID]) != 2 || len(byHost[b.ID]) != 2 {
		t.Fatalf("capsules not spread by headroom: %v (hosts %s, %s)", byHost, a.ID, b.ID)
	}
	for i, c := range caps {
		execEcho(t, p.CPs[(i+1)%2].URL, key, c.ID, fmt.Sprint("hi", i))
	}

	// Killing a control plane loses nothing: the other one serves every capsule and creates more.
	p.CPs[0].Kill()
	res := cptest.Call(t, p.CPs[1].URL, "GET", "/v1/capsules", key, nil)
	var listed []platform.Capsule
	res.JSON(t, &listed)
	if len(listed) != 4 {
		t.Fatalf("after killing a control plane: %d capsules listed: %s", len(listed), res.Body)
	}
	caps = append(caps, p.CreateCapsule(t, p.CPs[1].URL, key))
	execEcho(t, p.CPs[1].URL, key, caps[4].ID, "survivor")
	p.CPs[0] = p.StartCP(p.CPs[0].Port)
	execEcho(t, p.CPs[0].URL, key, caps[4].ID, "back")

	// Killing an agent: only its capsules become missing.
	b.Agent.Kill()
	p.WaitHost(t, b.ID, "unreachable")
	for _, c := range caps {
		got := p.GetCapsule(t, p.URL(), c.ID)
		want := "running"
		if got.HostID == b.ID {
			want = "missing"
		}
		if got.Status != want {
			t.Fatalf("capsule %s on %s: status %s, want %s", c.ID, got.HostID, got.Status, want)
		}
	}
	res = cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+byHost[b.ID][0]+"/exec", key, map[string]any{"cmd": "true"})
	if res.Status != 409 || res.ErrorCode() != "invalid_state" {
		t.Fatalf("exec on a missing capsule: %d %s", res.Status, res.Body)
	}

	// The agent comes back (its capsules kept running): they are running again.
	b.Agent.Start()
	p.WaitHost(t, b.ID, "online")
	for _, id := range byHost[b.ID] {
		platform.Eventually(t, 120*time.Second, "capsule "+id+" running again", func() error {
			if s := p.GetCapsule(t, p.URL(), id).Status; s != "running" {
				return fmt.Errorf("status %s", s)
			}
			return nil
		})
		execEcho(t, p.URL(), key, id, "again")
	}

	for _, c := range caps {
		if res := cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+c.ID, key, nil); res.Status != 204 {
			t.Fatalf("destroy %s: %d %s", c.ID, res.Status, res.Body)
		}
	}
	res = cptest.Call(t, p.URL(), "GET", "/v1/capsules", key, nil)
	if strings.TrimSpace(string(res.Body)) != "[]" {
		t.Fatalf("capsules left: %s", res.Body)
	}
	var hosts []struct{ ID, Status string }
	cptest.Call(t, p.URL(), "GET", "/v1/hosts", cptest.Bearer(p.Admin), nil).JSON(t, &hosts)
	if !slices.ContainsFunc(hosts, func(h struct{ ID, Status string }) bool { return h.ID == a.ID && h.Status == "online" }) {
		t.Fatalf("hosts: %+v", hosts)
	}
}
