package runtimetest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"

	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// EnvdVersion is the version a fake envd reports on /health unless
// Network.SetEnvdVersion says otherwise.
const EnvdVersion = "0.0.0-fake"

// NetOp names a Network method, for Network.FailNext.
type NetOp string

const (
	NetSetup    NetOp = "setup"
	NetTeardown NetOp = "teardown"
	NetCleanup  NetOp = "cleanup"
)

// Network is a fake of the agent's capsule networks (capsules.Network): a
// network is a loopback HTTP server standing in for the capsule's envd,
// and the host address Setup returns is that server's. The fake envd
// answers only while rt runs the capsule, like a real one, and records
// what the agent asks of it.
type Network struct {
	rt *Fake

	mu      sync.Mutex
	nets    map[string]*httptest.Server
	fail    map[NetOp][]error
	setups  int
	version string
	wedged  map[string]bool
	inits   map[string][]envdclient.Init
	prepare map[string]int
}

// NewNetwork returns a Network whose envds follow the capsules of rt.
// Close it when the test ends.
func NewNetwork(rt *Fake) *Network {
	return &Network{
		rt:      rt,
		nets:    map[string]*httptest.Server{},
		fail:    map[NetOp][]error{},
		version: EnvdVersion,
		wedged:  map[string]bool{},
		inits:   map[string][]envdclient.Init{},
		prepare: map[string]int{},
	}
}

// FailNext makes the next call of op fail with err (wrapped) before it
// changes anything.
func (n *Network) FailNext(op NetOp, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fail[op] = append(n.fail[op], err)
}

func (n *Network) failLocked(op NetOp, id string) error {
	q := n.fail[op]
	if len(q) == 0 {
		return nil
	}
	n.fail[op] = q[1:]
	return fmt.Errorf("fake network %s %s: %w", op, id, q[0])
}

// Setup starts the capsule's fake envd and returns its address as the
// capsule's host address. A network that exists already is an error: the
// agent must tear one down before building another.
func (n *Network) Setup(_ context.Context, id string, _ bool) (runtime.Network, string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.failLocked(NetSetup, id); err != nil {
		return runtime.Network{}, "", err
	}
	if _, ok := n.nets[id]; ok {
		return runtime.Network{}, "", fmt.Errorf("fake network %s exists", id)
	}
	srv := httptest.NewServer(n.envd(id))
	n.nets[id] = srv
	n.setups++
	return runtime.Network{
		NetnsPath: "/var/run/netns/fake-" + id,
		Interface: "eth0",
		Address:   "10.11.0.2/30",
		Gateway:   "10.11.0.1",
	}, srv.Listener.Addr().String(), nil
}

// Teardown stops the capsule's fake envd; a missing network is not an
// error.
func (n *Network) Teardown(_ context.Context, id string) error {
	n.mu.Lock()
	if err := n.failLocked(NetTeardown, id); err != nil {
		n.mu.Unlock()
		return err
	}
	srv := n.nets[id]
	delete(n.nets, id)
	n.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	return nil
}

// Cleanup tears down every network keep does not name.
func (n *Network) Cleanup(_ context.Context, keep func(id string) bool) error {
	n.mu.Lock()
	if err := n.failLocked(NetCleanup, ""); err != nil {
		n.mu.Unlock()
		return err
	}
	var gone []*httptest.Server
	for id, srv := range n.nets {
		if !keep(id) {
			gone = append(gone, srv)
			delete(n.nets, id)
		}
	}
	n.mu.Unlock()
	for _, srv := range gone {
		srv.Close()
	}
	return nil
}

// Close tears every network down.
func (n *Network) Close() {
	_ = n.Cleanup(context.Background(), func(string) bool { return false })
}

// IDs returns the capsules that have a network, sorted.
func (n *Network) IDs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := make([]string, 0, len(n.nets))
	for id := range n.nets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Setups returns how many networks Setup built.
func (n *Network) Setups() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.setups
}

// SetEnvdVersion sets the version every fake envd reports from now on.
func (n *Network) SetEnvdVersion(v string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.version = v
}

// Wedge makes capsule id's envd stop answering (or answer again), while
// the runtime may still run the capsule.
func (n *Network) Wedge(id string, wedged bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.wedged[id] = wedged
}

// Inits returns the /init requests capsule id's envd received.
func (n *Network) Inits(id string) []envdclient.Init {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.inits[id])
}

// Prepares returns how many /snapshot/prepare requests capsule id's envd
// received.
func (n *Network) Prepares(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.prepare[id]
}

// envd is the fake envd of capsule id: /health, /init and
// /snapshot/prepare, answered while the runtime runs the capsule.
func (n *Network) envd(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		wedged, version := n.wedged[id], n.version
		n.mu.Unlock()
		if wedged || n.rt.State(id) != StateRunning {
			http.Error(w, "capsule is not running", http.StatusServiceUnavailable)
			return
		}
		switch r.Method + " " + r.URL.Path {
		case "GET /health":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"version": version})
		case "POST /init":
			var in envdclient.Init
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			n.mu.Lock()
			n.inits[id] = append(n.inits[id], in)
			n.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		case "POST /snapshot/prepare":
			n.mu.Lock()
			n.prepare[id]++
			n.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	})
}
