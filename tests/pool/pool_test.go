package pool_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

type template struct {
	Name string `json:"name"`
	Pool struct {
		Size  int  `json:"size"`
		Ready *int `json:"ready"` // present in every template JSON
	} `json:"pool"`
}

func setPool(t *testing.T, p *platform.Platform, name string, size int) (int, template) {
	t.Helper()
	res := cptest.Call(t, p.URL(), "PUT", "/v1/admin/templates/"+name+"/pool", cptest.Bearer(p.Admin), map[string]int{"size": size})
	var tpl template
	if res.Status == 200 {
		res.JSON(t, &tpl)
	}
	return res.Status, tpl
}

func execOut(t *testing.T, p *platform.Platform, id, script string) string {
	t.Helper()
	res := cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+id+"/exec", cptest.Key(p.Key),
		map[string]any{"cmd": "/bin/sh", "args": []string{"-c", script}, "timeout_sec": 30})
	if res.Status != 200 {
		t.Fatalf("exec in %s: %d %s", id, res.Status, res.Body)
	}
	var out struct {
		Stdout   string `json:"stdout"`
		ExitCode int    `json:"exit_code"`
	}
	res.JSON(t, &out)
	return out.Stdout
}

func destroy(t *testing.T, p *platform.Platform, id string) {
	t.Helper()
	if res := cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+id, cptest.Key(p.Key), nil); res.Status != 204 {
		t.Fatalf("destroy %s: %d %s", id, res.Status, res.Body)
	}
}

func TestPoolAndForkThroughAPI(t *testing.T) {
	testutil.Integration(t)
	p := platform.New(t, 1)
	p.AddHost(t, false)

	for name, c := range map[string]struct {
		tpl  string
		size int
		want int
	}{
		"too big":  {"minimal", 65, 400},
		"negative": {"minimal", -1, 400},
		"unknown":  {"no-such-template", 1, 404},
	} {
		if st, _ := setPool(t, p, c.tpl, c.size); st != c.want {
			t.Errorf("%s: status %d, want %d", name, st, c.want)
		}
	}
	if res := cptest.Call(t, p.URL(), "PUT", "/v1/admin/templates/minimal/pool", cptest.Key(p.Key), map[string]int{"size": 1}); res.Status != 401 && res.Status != 403 {
		t.Errorf("team API key set a pool: %d", res.Status)
	}

	st, tpl := setPool(t, p, "minimal", 1)
	if st != 200 || tpl.Pool.Size != 1 || tpl.Pool.Ready == nil {
		t.Fatalf("set pool: %d %+v", st, tpl)
	}
	platform.Eventually(t, 120*time.Second, "pool ready", func() error {
		if _, tpl := setPool(t, p, "minimal", 1); tpl.Pool.Ready == nil || *tpl.Pool.Ready < 1 {
			return fmt.Errorf("not ready: %+v", tpl.Pool)
		}
		return nil
	})
	// The listings count the member once the agent's heartbeat reports it.
	waitReady(t, p, "minimal", 1, 1)

	// A create of the default shape takes the warm capsule and answers with its own identity.
	res := cptest.Call(t, p.URL(), "POST", "/v1/capsules", cptest.Key(p.Key), map[string]any{"template": "minimal"})
	if res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	var c platform.Capsule
	res.JSON(t, &c)
	if got := strings.TrimSpace(execOut(t, p, c.ID, "echo $WRENN_SANDBOX_ID")); got != c.ID {
		t.Fatalf("WRENN_SANDBOX_ID %q, want %s", got, c.ID)
	}

	// Fork it into two.
	execOut(t, p, c.ID, "echo before-fork > /tmp/state")
	res = cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+c.ID+"/fork", cptest.Key(p.Key), map[string]int{"count": 2})
	if res.Status != 201 {
		t.Fatalf("fork: %d %s", res.Status, res.Body)
	}
	var forks []platform.Capsule
	res.JSON(t, &forks)
	if len(forks) != 2 {
		t.Fatalf("fork answered %d capsules", len(forks))
	}
	for _, f := range forks {
		if f.Status != "running" || f.ID == c.ID || f.HostID != c.HostID {
			t.Fatalf("fork %+v of %+v", f, c)
		}
		if got := execOut(t, p, f.ID, `cat /tmp/state; echo $WRENN_SANDBOX_ID`); got != "before-fork\n"+f.ID+"\n" {
			t.Fatalf("fork %s: %q", f.ID, got)
		}
	}
	for name, body := range map[string]any{"zero": map[string]int{"count": 0}, "too many": map[string]int{"count": 17}} {
		if res := cptest.Call(t, p.URL(), "POST", "/v1/capsules/"+c.ID+"/fork", cptest.Key(p.Key), body); res.Status != 400 {
			t.Errorf("fork %s: %d %s", name, res.Status, res.Body)
		}
	}
	for _, id := range []string{c.ID, forks[0].ID, forks[1].ID} {
		destroy(t, p, id)
	}
	if st, tpl := setPool(t, p, "minimal", 0); st != 200 || tpl.Pool.Size != 0 {
		t.Fatalf("pool off: %d %+v", st, tpl)
	}
}

// listed returns a template of a listing (GET /v1/admin/templates as the admin, GET /v1/snapshots with
// the team's API key).
func listed(t *testing.T, p *platform.Platform, admin bool, name string) (template, error) {
	t.Helper()
	res := cptest.Call(t, p.URL(), "GET", "/v1/snapshots", cptest.Key(p.Key), nil)
	if admin {
		res = cptest.Call(t, p.URL(), "GET", "/v1/admin/templates", cptest.Bearer(p.Admin), nil)
	}
	if res.Status != 200 {
		return template{}, fmt.Errorf("list templates: %d %s", res.Status, res.Body)
	}
	var ts []template
	res.JSON(t, &ts)
	for _, tpl := range ts {
		if tpl.Name == name {
			if tpl.Pool.Ready == nil {
				return tpl, fmt.Errorf("template %s without pool.ready: %s", name, res.Body)
			}
			return tpl, nil
		}
	}
	return template{}, fmt.Errorf("no template %s in %s", name, res.Body)
}

// waitReady waits until both listings show name's pool with size and ready members (the sum over the
// hosts' heartbeat reports).
func waitReady(t *testing.T, p *platform.Platform, name string, size, ready int) {
	t.Helper()
	platform.Eventually(t, 120*time.Second, fmt.Sprintf("%s pool %d/%d in the listings", name, ready, size), func() error {
		for _, admin := range []bool{true, false} {
			tpl, err := listed(t, p, admin, name)
			if err != nil {
				return err
			}
			if tpl.Pool.Size != size || *tpl.Pool.Ready != ready {
				return fmt.Errorf("admin=%v: pool %+v (ready %d)", admin, tpl.Pool, *tpl.Pool.Ready)
			}
		}
		return nil
	})
}

// A pool set by the admin reaches a host that joins later through its heartbeats, and the template
// JSON's ready counts the members of every host.
func TestPoolReachesLaterHosts(t *testing.T) {
	testutil.Integration(t)
	p := platform.New(t, 1)
	p.AddHost(t, false)
	if tpl, err := listed(t, p, true, "minimal"); err != nil || tpl.Pool.Size != 0 || *tpl.Pool.Ready != 0 {
		t.Fatalf("before any pool: %+v, %v", tpl.Pool, err)
	}
	if st, tpl := setPool(t, p, "minimal", 1); st != 200 || tpl.Pool.Size != 1 {
		t.Fatalf("set pool: %d %+v", st, tpl)
	}
	waitReady(t, p, "minimal", 1, 1)

	// The second host was not there for the PUT: its first heartbeat's answer gives it the pool.
	second := p.AddHost(t, false)
	waitReady(t, p, "minimal", 1, 2)

	// An agent that was down while the pool changed gets the new size from its first heartbeat after a
	// restart (its recorded pools say 1). Meanwhile the listings count the online host only.
	second.Agent.Stop()
	p.WaitHost(t, second.ID, "unreachable")
	if st, tpl := setPool(t, p, "minimal", 2); st != 200 || tpl.Pool.Size != 2 {
		t.Fatalf("set pool: %d %+v", st, tpl)
	}
	waitReady(t, p, "minimal", 2, 2)
	second.Agent.Start()
	waitReady(t, p, "minimal", 2, 4)

	// Off: both hosts drain (the PUT reaches them at once, their heartbeats agree).
	if st, tpl := setPool(t, p, "minimal", 0); st != 200 || tpl.Pool.Size != 0 {
		t.Fatalf("pool off: %d %+v", st, tpl)
	}
	waitReady(t, p, "minimal", 0, 0)

	// An agent's own -pool flag sizes the templates the control plane does not name, and its members
	// show in the template JSON too.
	p.AgentArgs = []string{"-pool", "minimal=1"}
	p.AddHost(t, false)
	waitReady(t, p, "minimal", 0, 1)
}
