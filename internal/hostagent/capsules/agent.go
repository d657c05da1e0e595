package capsules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Network gives capsules their network: a namespace with an address the
// host reaches, and NAT to the outside when allowed. internal/hostagent/network
// implements it.
type Network interface {
	// Setup creates the capsule's network and returns what the runtime
	// needs and the capsule's address as seen from the host.
	Setup(ctx context.Context, id string, allowInternet bool) (n runtime.Network, hostIP string, err error)
	// Teardown removes it; a missing network is not an error.
	Teardown(ctx context.Context, id string) error
	// Cleanup removes networks of capsules keep does not name.
	Cleanup(ctx context.Context, keep func(id string) bool) error
}

// Images yields the read-only root filesystems capsules boot from, by
// recipe name. internal/hostagent/images implements it.
type Images interface {
	Ensure(ctx context.Context, name string) (runtime.Image, error)
}

// Config configures an Agent.
type Config struct {
	DataDir string // default /var/lib/wrenn
	Runtime runtime.Runtime
	Network Network
	Images  Images
	// Envd is the envd binary new capsules run. The agent keeps a content-
	// addressed copy, so paused capsules and templates restore with the
	// exact binary they were saved with.
	Envd string
	Log  *slog.Logger
	// ReadyTimeout bounds waiting for envd after boot or restore (30 s).
	ReadyTimeout time.Duration
	// IdleCheck is how often inactivity timeouts are checked (1 s).
	IdleCheck time.Duration
	// MetricsEvery is the metrics sampling interval (500 ms). The 10m tier
	// keeps the samples themselves; the 2h and 24h tiers average them.
	MetricsEvery time.Duration
	// MetricsIdleEvery is the sampling interval of idle capsules (30 s; at
	// most MetricsEvery: every capsule every MetricsEvery).
	MetricsIdleEvery time.Duration
	// Versions are reported in every capsule's metadata: agent_version and
	// the backend's version (runsc_version or firecracker_version). The
	// agent adds kernel_version (the host kernel release, unless set here)
	// and each capsule's envd_version.
	Versions map[string]string
	// NetworkGrace is how long a paused capsule keeps its network before
	// it is released (30 s; negative: at once). A resume within it skips
	// building a new one.
	NetworkGrace time.Duration
	// Stopping, when set, is called with a capsule's id when it stops
	// serving: at the start of every pause and every destroy, before envd
	// is quiesced. The port proxy closes the capsule's connections there.
	// It must return quickly and not call the Agent.
	Stopping func(id string)
	// Pools are the warm pools to keep from the start, over those SetPool
	// recorded in <data>/pools.json before (pool.go).
	Pools []PoolSpec
	// PoolCheck is how often pool members' health and the host's memory
	// are checked (10 s).
	PoolCheck time.Duration
	// PoolMemoryFloorMB is the available host memory below which pools
	// stop filling and give members back (0: a tenth of the host's).
	PoolMemoryFloorMB int64
	// MemInfo reports the host's available and total memory in MB
	// (default: /proc/meminfo).
	MemInfo func() (avail, total int64, err error)
}

// Agent owns the capsules of this host.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	dirs layout
	rt   runtime.Runtime
	net  Network
	envd string // content-addressed envd for new capsules
	// versions is Config.Versions plus kernel_version; read-only.
	versions map[string]string

	mu         sync.Mutex
	capsules   map[string]*entry
	autoPaused []string
	metrics    map[string]*series
	pools      map[poolKey]*pool

	// named are the pools the control plane named last (pool_reconcile.go);
	// namedMu serialises their changes with the SetPool calls they make.
	namedMu sync.Mutex
	named   map[poolKey]bool

	stop chan struct{}
	bg   sync.WaitGroup
}

// entry is one capsule in memory: its record and a lock serialising
// lifecycle operations on it.
type entry struct {
	op   sync.Mutex // held for the whole of a lifecycle operation
	rec  *record    // guarded by Agent.mu
	busy int        // open streams/calls; guarded by Agent.mu
	// A paused capsule's network is kept for Config.NetworkGrace, so a
	// quick resume reuses it; netTimer then tears it down. Both guarded by
	// op.
	netKept  bool
	netTimer *time.Timer
	keptIP   string
}

// New loads the capsules recorded in the data directory, reconciles them
// with what the runtime and the network still have (finishing or undoing
// operations a crashed agent left half done, removing leftovers), and
// starts the inactivity and metrics loops.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = "/var/lib/wrenn"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	if cfg.IdleCheck <= 0 {
		cfg.IdleCheck = time.Second
	}
	if cfg.MetricsEvery <= 0 {
		cfg.MetricsEvery = DefaultMetricsEvery
	}
	if cfg.MetricsIdleEvery <= 0 {
		cfg.MetricsIdleEvery = DefaultMetricsIdleEvery
	}
	cfg.MetricsIdleEvery = max(cfg.MetricsIdleEvery, cfg.MetricsEvery)
	if cfg.NetworkGrace == 0 {
		cfg.NetworkGrace = 30 * time.Second
	}
	cfg.NetworkGrace = max(cfg.NetworkGrace, 0)
	if cfg.PoolCheck <= 0 {
		cfg.PoolCheck = 10 * time.Second
	}
	if cfg.MemInfo == nil {
		cfg.MemInfo = hostMemInfo
	}
	if cfg.Runtime == nil || cfg.Network == nil || cfg.Images == nil {
		return nil, errors.New("agent: Runtime, Network and Images are required")
	}
	a := &Agent{
		cfg:      cfg,
		log:      cfg.Log,
		dirs:     layout{root: cfg.DataDir},
		rt:       cfg.Runtime,
		net:      cfg.Network,
		capsules: map[string]*entry{},
		metrics:  map[string]*series{},
		pools:    map[poolKey]*pool{},
		versions: runtimeVersions(cfg.Versions),
		stop:     make(chan struct{}),
	}
	for _, d := range []string{a.dirs.capsules(), a.dirs.templates(), a.dirs.envd()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	envd, err := a.installEnvd(cfg.Envd)
	if err != nil {
		return nil, err
	}
	a.envd = envd
	if err := a.reconcile(ctx); err != nil {
		return nil, fmt.Errorf("reconcile capsules: %w", err)
	}
	a.bg.Add(2)
	go a.idleLoop()
	go a.metricsLoop()
	a.named = map[poolKey]bool{}
	for _, s := range a.savedPools(cfg.Pools) {
		if !slices.ContainsFunc(cfg.Pools, func(c PoolSpec) bool { return c.TeamID == s.TeamID && c.TemplateID == s.TemplateID }) {
			// Recorded by an earlier SetPool: the control plane's, until its next answer says otherwise.
			a.named[poolKey{s.TeamID, s.TemplateID}] = true
		}
		if err := a.SetPool(ctx, s); err != nil {
			a.Close()
			return nil, fmt.Errorf("pool of %s: %w", s.TemplateID, err)
		}
	}
	return a, nil
}

// Close stops the agent's loops and destroys the warm pools' members.
// Capsules keep running; a new Agent on the same data directory picks them
// up.
func (a *Agent) Close() {
	a.mu.Lock() // SetPool starts pools under a.mu: none starts after this
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.mu.Unlock()
	a.bg.Wait()
}

// installEnvd copies the envd binary to <data>/envd/<sha256>/envd (once)
// and returns that path.
func (a *Agent) installEnvd(src string) (string, error) {
	if src == "" {
		return "", errors.New("agent: Envd binary path is required")
	}
	f, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("envd binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	dir := filepath.Join(a.dirs.envd(), sum)
	dst := filepath.Join(dir, "envd")
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, f); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp, dst)
}

// background runs f after the current operation has answered; Close waits
// for it.
func (a *Agent) background(f func()) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		f()
	}()
}

// keepNetwork keeps a just-paused capsule's network for the grace period
// and then tears it down; the caller holds e.op.
func (a *Agent) keepNetwork(e *entry, id, hostIP string) {
	e.netKept, e.keptIP = true, hostIP
	e.netTimer = time.AfterFunc(a.cfg.NetworkGrace, func() {
		e.op.Lock()
		defer e.op.Unlock()
		if !e.netKept {
			return // resumed or destroyed meanwhile
		}
		e.netKept, e.netTimer = false, nil
		if err := a.net.Teardown(context.Background(), id); err != nil {
			a.log.Warn("release network of paused capsule", "capsule_id", id, "error", err)
		}
	})
}

// takeKeptNetwork stops the release of a kept network and reports whether
// there was one (and its host address); the caller holds e.op.
func (e *entry) takeKeptNetwork() (string, bool) {
	if !e.netKept {
		return "", false
	}
	e.netTimer.Stop()
	e.netKept, e.netTimer = false, nil
	return e.keptIP, true
}

// lookup returns the entry of id or ErrNotFound.
func (a *Agent) lookup(id string) (*entry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.capsules[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return e, nil
}

// snapshotRec returns a copy of e's record.
func (a *Agent) snapshotRec(e *entry) record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return *e.rec
}

// setStatus updates and persists the status of e's record.
func (a *Agent) setStatus(e *entry, s Status, mutate func(r *record)) error {
	a.mu.Lock()
	e.rec.Status = s
	if mutate != nil {
		mutate(e.rec)
	}
	r := *e.rec
	a.mu.Unlock()
	return a.saveRecord(&r)
}

func (a *Agent) client(r *record) *envdclient.Client {
	return envdclient.New(r.HostIP, envdclient.WithToken(r.EnvdToken))
}

// stopping tells Config.Stopping that capsule id stops serving.
func (a *Agent) stopping(id string) {
	if a.cfg.Stopping != nil {
		a.cfg.Stopping(id)
	}
}

// touch records activity on a capsule.
func (a *Agent) touch(e *entry) {
	a.mu.Lock()
	e.rec.LastActiveAt = time.Now().UTC()
	a.mu.Unlock()
}

// Info returns one capsule.
func (a *Agent) Info(id string) (Info, error) {
	e, err := a.lookup(id)
	if err != nil {
		return Info{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.info(e.rec), nil
}

// List returns every capsule and drains the ids paused for inactivity
// since the last call.
func (a *Agent) List(context.Context) ([]Info, []string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]Info, 0, len(a.capsules))
	for _, e := range a.capsules {
		out = append(out, a.info(e.rec))
	}
	auto := a.autoPaused
	a.autoPaused = nil
	return out, auto, nil
}

// Ping resets a capsule's inactivity clock.
func (a *Agent) Ping(_ context.Context, id string) error {
	e, err := a.lookup(id)
	if err != nil {
		return err
	}
	a.touch(e)
	return nil
}

// Envd returns a client for a running capsule's envd. The capsule counts as
// active and busy until done is called.
func (a *Agent) Envd(_ context.Context, id string) (*envdclient.Client, Info, func(), error) {
	e, err := a.lookup(id)
	if err != nil {
		return nil, Info{}, nil, err
	}
	a.mu.Lock()
	if e.rec.Status != StatusRunning {
		st := e.rec.Status
		a.mu.Unlock()
		return nil, Info{}, nil, fmt.Errorf("%w: sandbox %s is %s", ErrState, id, st)
	}
	e.busy++
	e.rec.LastActiveAt = time.Now().UTC()
	r := *e.rec
	a.mu.Unlock()
	var once sync.Once
	done := func() {
		once.Do(func() {
			a.mu.Lock()
			e.busy--
			e.rec.LastActiveAt = time.Now().UTC()
			a.mu.Unlock()
		})
	}
	return a.client(&r), a.info(&r), done, nil
}
