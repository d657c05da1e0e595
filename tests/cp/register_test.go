package cp_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil/cptest"
	"github.com/wrenn/wrenn/internal/testutil/platform"
)

// TestCreateRightAfterRegistration: a user adds a host and creates a capsule the moment its agent has
// registered, while the agent is still setting up and not serving yet. The host is pending until the
// control plane reaches the agent, and the create waits for it: 201, never 503.
func TestCreateRightAfterRegistration(t *testing.T) {
	p := platform.New(t, 1)
	n := p.StartHost(t, true)
	key := cptest.Key(p.Key)
	platform.Eventually(t, 60*time.Second, "host "+n.ID+" registered", func() error {
		res := cptest.Call(t, p.URL(), "GET", "/v1/hosts/"+n.ID, cptest.Bearer(p.Admin), nil)
		var h struct {
			Status  string
			Address string
		}
		_ = json.Unmarshal(res.Body, &h)
		if h.Address == "" {
			return fmt.Errorf("not registered: %s", res.Body)
		}
		if h.Status != "pending" && h.Status != "online" {
			return fmt.Errorf("registered host is %q", h.Status)
		}
		return nil
	})
	c := p.CreateCapsule(t, p.URL(), key)
	t.Cleanup(func() { cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+c.ID, key, nil) })
	if c.HostID != n.ID {
		t.Fatalf("capsule on %s, want %s", c.HostID, n.ID)
	}
	p.WaitHost(t, n.ID, "online")
	execEcho(t, p.URL(), key, c.ID, "first")
	if res := cptest.Call(t, p.URL(), "DELETE", "/v1/capsules/"+c.ID, key, nil); res.Status != 204 {
		t.Fatalf("destroy: %d %s", res.Status, res.Body)
	}
}
