package capsules

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Warm pools (docs/agent.md, "Warm pools"): per template, the agent keeps
// Size capsules booted (or restored) ahead of time, each in its own network
// namespace and with no identity — no capsule id in its metadata, no access
// token, no defaults: envd's /init has not run. A create for the template
// takes one, renames it (its record and directory get the capsule's id; its
// runtime container and network keep the pool name, record.RuntimeID), sends
// /init with the identity, and answers. Each member is a fresh boot or
// restore, never a recycled capsule. Every pool has one goroutine refilling
// it and checking its members' health; members are destroyed when the pool
// shrinks, on memory pressure, when the template is deleted and when the
// agent stops (never paused).

// Pool shape defaults: those of the control plane's creates (1 vCPU,
// 512 MB, 5120 MB disk, internet on), so that its creates hit.
const (
	PoolDefaultVCPUs    = 1
	PoolDefaultMemoryMB = 512
	PoolDefaultDiskMB   = 5120
	// MaxPoolSize bounds one template's pool.
	MaxPoolSize = 64
)

// PoolSpec configures the warm pool of one template. A create hits the
// pool when it names the template and asks for the pool's shape (vCPUs,
// memory, disk, internet access; zero resources take the pool's).
type PoolSpec struct {
	TeamID        string // "" for the built-in images and platform templates
	TemplateID    string
	Size          int // 0 removes the pool
	VCPUs         int // 0: PoolDefaultVCPUs
	MemoryMB      int // 0: PoolDefaultMemoryMB
	DiskMB        int // 0: PoolDefaultDiskMB
	AllowInternet bool
}

// PoolStat is a pool's state, for metrics, the API and the control plane.
type PoolStat struct {
	TeamID, TemplateID string
	Size, Ready        int
	MemoryMB           int // memory the ready members hold
	// The shape of the pool's members.
	VCPUs, MemberMemoryMB, DiskMB int
	AllowInternet                 bool
	Hits, Misses                  uint64
	// RefillSeconds sums the time each member took to boot, over Refills.
	RefillSeconds float64
	Refills       uint64
}

type poolKey struct{ team, template string }

// pool is one template's warm pool; its fields are guarded by Agent.mu.
type pool struct {
	spec   PoolSpec
	ready  []*pooled
	hits   uint64
	misses uint64
	refill float64
	fills  uint64
	wake   chan struct{} // capacity 1: something to do
	stop   chan struct{} // closed to stop the pool's goroutine
	done   chan struct{} // closed when it has drained and returned
}

// pooled is one ready member of a pool.
type pooled struct {
	rec   record // ID == RuntimeID == the pool name, "wp-…"
	prior string // the token envd holds: the snapshot template's, or none
}

func (l layout) pool() string                 { return filepath.Join(l.root, "pool") }
func (l layout) poolMember(rid string) string { return filepath.Join(l.pool(), rid) }
func (l layout) poolsFile() string            { return filepath.Join(l.root, "pools.json") }

func (s *PoolSpec) normalise() {
	if s.VCPUs <= 0 {
		s.VCPUs = PoolDefaultVCPUs
	}
	if s.MemoryMB <= 0 {
		s.MemoryMB = PoolDefaultMemoryMB
	}
	if s.DiskMB <= 0 {
		s.DiskMB = PoolDefaultDiskMB
	}
}

// SetPool creates, resizes or (Size 0) removes the warm pool of a
// template. A changed shape replaces the members. It returns at once; the
// pool fills in the background.
func (a *Agent) SetPool(_ context.Context, s PoolSpec) error {
	if !validName(s.TemplateID) || (s.TeamID != "" && !validName(s.TeamID)) {
		return fmt.Errorf("%w: bad template or team id", ErrInvalid)
	}
	if s.Size < 0 || s.Size > MaxPoolSize {
		return fmt.Errorf("%w: pool size must be 0..%d", ErrInvalid, MaxPoolSize)
	}
	s.normalise()
	key := poolKey{s.TeamID, s.TemplateID}
	a.mu.Lock()
	select {
	case <-a.stop:
		a.mu.Unlock()
		return fmt.Errorf("%w: agent is stopping", ErrState)
	default:
	}
	p := a.pools[key]
	if s.Size == 0 {
		delete(a.pools, key)
		a.savePoolsLocked()
		a.mu.Unlock()
		if p != nil {
			close(p.stop)
			<-p.done
		}
		return nil
	}
	if p != nil && p.spec == s {
		a.mu.Unlock()
		return nil // unchanged (the control plane repeats its pools with every heartbeat)
	}
	if p == nil {
		p = &pool{spec: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		a.pools[key] = p
		a.bg.Add(1)
		go a.runPool(p)
	}
	var stale []*pooled
	if p.spec.VCPUs != s.VCPUs || p.spec.MemoryMB != s.MemoryMB || p.spec.DiskMB != s.DiskMB || p.spec.AllowInternet != s.AllowInternet {
		stale, p.ready = p.ready, nil
	}
	p.spec = s
	a.savePoolsLocked()
	if len(p.ready) > s.Size {
		stale = append(stale, p.ready[s.Size:]...)
		p.ready = p.ready[:s.Size]
	}
	a.mu.Unlock()
	for _, m := range stale {
		a.destroyPooled(m)
	}
	p.poke()
	return nil
}

// savePoolsLocked records every pool's spec in <data>/pools.json, so pools set over the API outlive an
// agent restart; the caller holds a.mu. A failure is logged: the pools run on.
func (a *Agent) savePoolsLocked() {
	specs := make([]PoolSpec, 0, len(a.pools))
	for _, p := range a.pools {
		specs = append(specs, p.spec)
	}
	slices.SortFunc(specs, func(x, y PoolSpec) int {
		return cmpString(x.TeamID+"/"+x.TemplateID, y.TeamID+"/"+y.TemplateID)
	})
	if err := writeJSON(a.dirs.poolsFile(), specs); err != nil {
		a.log.Error("warm pool: record pools", "error", err)
	}
}

// savedPools returns the pools recorded by savePoolsLocked, overridden by configured for the same
// template.
func (a *Agent) savedPools(configured []PoolSpec) []PoolSpec {
	var saved []PoolSpec
	if err := readJSON(a.dirs.poolsFile(), &saved); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.log.Warn("warm pool: unreadable pools record; ignored", "error", err)
	}
	out := slices.Clone(configured)
	for _, s := range saved {
		if !slices.ContainsFunc(configured, func(c PoolSpec) bool { return c.TeamID == s.TeamID && c.TemplateID == s.TemplateID }) {
			out = append(out, s)
		}
	}
	return out
}

func (p *pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Pools reports every pool.
func (a *Agent) Pools() []PoolStat {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]PoolStat, 0, len(a.pools))
	for _, p := range a.pools {
		out = append(out, PoolStat{
			TeamID: p.spec.TeamID, TemplateID: p.spec.TemplateID, Size: p.spec.Size, Ready: len(p.ready),
			MemoryMB: len(p.ready) * p.spec.MemoryMB, Hits: p.hits, Misses: p.misses,
			VCPUs: p.spec.VCPUs, MemberMemoryMB: p.spec.MemoryMB, DiskMB: p.spec.DiskMB, AllowInternet: p.spec.AllowInternet,
			RefillSeconds: p.refill, Refills: p.fills,
		})
	}
	slices.SortFunc(out, func(x, y PoolStat) int {
		if c := cmpString(x.TeamID, y.TeamID); c != 0 {
			return c
		}
		return cmpString(x.TemplateID, y.TemplateID)
	})
	return out
}

func cmpString(x, y string) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// PooledMemoryMB is the memory the ready members of every pool hold: the
// host's capacity reported to the control plane leaves it out, so pooled
// capsules count against it.
func (a *Agent) PooledMemoryMB() int {
	n := 0
	for _, s := range a.Pools() {
		n += s.MemoryMB
	}
	return n
}

// dropPool removes the pool of a template, destroying its members (the
// template was deleted or replaced).
func (a *Agent) dropPool(team, template string) {
	a.mu.Lock()
	p := a.pools[poolKey{team, template}]
	delete(a.pools, poolKey{team, template})
	if p != nil {
		a.savePoolsLocked()
	}
	a.mu.Unlock()
	if p != nil {
		close(p.stop)
		<-p.done
	}
}

// takePooled hands out a ready member matching a create of p, or nil. A
// create for a pooled template that finds none counts as a miss.
func (a *Agent) takePooled(p CreateParams) *pooled {
	a.mu.Lock()
	defer a.mu.Unlock()
	pl := a.pools[poolKey{p.TeamID, p.TemplateID}]
	if pl == nil && p.TeamID != "" && !a.teamHasTemplate(p.TeamID, p.TemplateID) {
		pl = a.pools[poolKey{"", p.TemplateID}]
	}
	if pl == nil {
		return nil
	}
	s := pl.spec
	fits := (p.VCPUs == 0 || p.VCPUs == s.VCPUs) && (p.MemoryMB == 0 || p.MemoryMB == s.MemoryMB) &&
		(p.DiskMB == 0 || p.DiskMB == s.DiskMB) && p.AllowInternet == s.AllowInternet
	if !fits || len(pl.ready) == 0 {
		pl.misses++
		pl.poke()
		return nil
	}
	m := pl.ready[0]
	pl.ready = pl.ready[1:]
	pl.hits++
	pl.poke()
	return m
}

// teamHasTemplate reports whether the team has its own template named id
// on this host (which a create then means rather than a platform pool's).
func (a *Agent) teamHasTemplate(team, id string) bool {
	return validName(team) && validName(id) && exists(a.dirs.template(team, id))
}

// runPool keeps p filled and healthy until it is removed or the agent
// stops, then destroys its members.
func (a *Agent) runPool(p *pool) {
	defer a.bg.Done()
	defer close(p.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := make(chan struct{})
	go func() { // ends before runPool returns: cancel, then wait
		defer close(watch)
		select {
		case <-p.stop:
		case <-a.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	defer func() { cancel(); <-watch; a.drainPool(p) }()
	check := time.NewTicker(a.cfg.PoolCheck)
	defer check.Stop()
	backoff := time.Second
	for ctx.Err() == nil {
		if spec, need := a.poolNeed(p); need {
			start := time.Now()
			m, err := a.bootPooled(ctx, spec)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				a.log.Warn("warm pool: boot failed", "template", spec.TemplateID, "error", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
			backoff = time.Second
			if !a.addPooled(p, spec, m, time.Since(start)) {
				a.destroyPooled(m)
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-p.wake:
		case <-check.C:
			a.checkPool(ctx, p)
		}
	}
}

// poolNeed reports whether p wants another member (and the spec to boot
// it with): below its size, and the host's available memory stays above
// the floor with one more.
func (a *Agent) poolNeed(p *pool) (PoolSpec, bool) {
	a.mu.Lock()
	s, n := p.spec, len(p.ready)
	a.mu.Unlock()
	if n >= s.Size {
		return s, false
	}
	if avail, floor, ok := a.memoryHeadroom(); ok && avail-int64(s.MemoryMB) < floor {
		return s, false
	}
	return s, true
}

// addPooled adds m to p unless p no longer wants it (resized, reshaped or
// stopping meanwhile).
func (a *Agent) addPooled(p *pool, booted PoolSpec, m *pooled, took time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	p.refill += took.Seconds()
	p.fills++
	if p.spec != booted || len(p.ready) >= p.spec.Size {
		return false
	}
	select {
	case <-p.stop:
		return false
	default:
	}
	p.ready = append(p.ready, m)
	return true
}

// checkPool replaces members whose envd does not answer and, under memory
// pressure, gives one member back.
func (a *Agent) checkPool(ctx context.Context, p *pool) {
	a.mu.Lock()
	members := slices.Clone(p.ready)
	a.mu.Unlock()
	var bad []*pooled
	for _, m := range members {
		hctx, cancel := context.WithTimeout(ctx, min(5*time.Second, a.cfg.ReadyTimeout))
		err := envdclient.New(m.rec.HostIP, envdclient.WithToken(m.prior)).WaitHealthy(hctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Warn("warm pool: member unhealthy; replacing it", "template", m.rec.TemplateID, "member", m.rec.ID, "error", err)
			bad = append(bad, m)
		}
	}
	if avail, floor, ok := a.memoryHeadroom(); ok && avail < floor {
		a.mu.Lock()
		if n := len(p.ready); n > 0 {
			bad = append(bad, p.ready[n-1])
		}
		a.mu.Unlock()
		a.log.Info("warm pool: memory pressure; releasing a member", "template", p.spec.TemplateID, "available_mb", avail, "floor_mb", floor)
	}
	if len(bad) == 0 {
		return
	}
	a.mu.Lock()
	var taken []*pooled
	p.ready = slices.DeleteFunc(p.ready, func(m *pooled) bool {
		if slices.Contains(bad, m) {
			taken = append(taken, m)
			return true
		}
		return false
	})
	a.mu.Unlock()
	for _, m := range taken { // not handed out meanwhile
		a.destroyPooled(m)
	}
}

// drainPool destroys every ready member of p.
func (a *Agent) drainPool(p *pool) {
	a.mu.Lock()
	members := p.ready
	p.ready = nil
	a.mu.Unlock()
	for _, m := range members {
		a.destroyPooled(m)
	}
}

// bootPooled boots (or restores) one identity-less member of a pool of s
// and waits for its envd.
func (a *Agent) bootPooled(ctx context.Context, s PoolSpec) (_ *pooled, err error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	rid := "wp-" + hex.EncodeToString(b[:])
	m := &pooled{rec: record{
		ID: rid, RuntimeID: rid, Status: StatusCreating, TeamID: s.TeamID, TemplateID: s.TemplateID,
		VCPUs: s.VCPUs, MemoryMB: s.MemoryMB, DiskMB: s.DiskMB, AllowInternet: s.AllowInternet, Envd: a.envd,
	}}
	var snap string
	if tpl, terr := a.loadTemplate(s.TeamID, s.TemplateID); terr == nil {
		m.rec.Image, m.prior, snap = tpl.Image, tpl.EnvdToken, a.dirs.templateSnapshot(tpl.TeamID, tpl.ID)
		if tpl.Envd != "" {
			m.rec.Envd = tpl.Envd
		}
		m.rec.DefaultUser, m.rec.DefaultEnv = tpl.DefaultUser, copyEnv(tpl.DefaultEnv)
	} else if !errors.Is(terr, ErrTemplateGone) {
		return nil, terr
	} else if it, ierr := a.loadImageTemplate(s.TeamID, s.TemplateID); ierr == nil {
		m.rec.Image, m.rec.DefaultUser, m.rec.DefaultEnv = it.Image, it.DefaultUser, copyEnv(it.DefaultEnv)
	} else if img, ierr := a.cfg.Images.Ensure(ctx, s.TemplateID); ierr == nil {
		m.rec.Image = img
	} else {
		return nil, fmt.Errorf("%w: %s", ErrTemplateGone, s.TemplateID)
	}
	dir := a.dirs.poolMember(rid)
	meta := filepath.Join(dir, "meta")
	defer func() {
		if err != nil {
			bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = a.rt.Destroy(bg, rid)
			_ = a.net.Teardown(bg, rid)
			_ = os.RemoveAll(dir)
		}
	}()
	if err := os.MkdirAll(meta, 0o755); err != nil {
		return nil, err
	}
	// No capsule id yet: envd learns it at /init, when the member is handed out.
	if err := writeJSONSync(filepath.Join(meta, "metadata.json"), metadata{TemplateID: s.TemplateID}, false); err != nil {
		return nil, err
	}
	n, hostIP, err := a.net.Setup(ctx, rid, s.AllowInternet)
	if err != nil {
		return nil, fmt.Errorf("network for %s: %w", rid, err)
	}
	m.rec.Network, m.rec.HostIP = n, hostIP
	spec := runtime.Spec{
		ID: rid, VCPUs: s.VCPUs, MemoryMB: s.MemoryMB, DiskMB: s.DiskMB,
		Image: m.rec.Image, Network: n, MetadataDir: meta, Envd: m.rec.Envd,
	}
	if snap != "" {
		err = a.rt.Restore(ctx, spec, runtime.Snapshot{Dir: snap})
	} else {
		err = a.rt.Create(ctx, spec)
	}
	if err != nil {
		return nil, fmt.Errorf("start pool member %s: %w", rid, err)
	}
	wctx, cancel := context.WithTimeout(ctx, a.cfg.ReadyTimeout)
	defer cancel()
	if err := envdclient.New(hostIP, envdclient.WithToken(m.prior)).WaitHealthy(wctx); err != nil {
		return nil, fmt.Errorf("pool member %s: %w", rid, err)
	}
	return m, nil
}

// destroyPooled removes a member that was never handed out.
func (a *Agent) destroyPooled(m *pooled) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if err := a.rt.Destroy(ctx, m.rec.RuntimeID); err != nil {
		errs = append(errs, err)
	}
	if err := a.net.Teardown(ctx, m.rec.RuntimeID); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(a.dirs.poolMember(m.rec.RuntimeID)); err != nil {
		errs = append(errs, err)
	}
	envdclient.CloseIdle()
	if err := errors.Join(errs...); err != nil {
		a.log.Error("warm pool: member cleanup incomplete", "member", m.rec.RuntimeID, "error", err)
	}
}

// adoptPooled gives member m the identity of the capsule being created in
// e: its record takes m's runtime, network and image, m's directory
// becomes the capsule's, and /init sends the id (through the metadata
// file), defaults and access token. On error m is gone and e is as before.
func (a *Agent) adoptPooled(ctx context.Context, e *entry, m *pooled) (Info, error) {
	a.mu.Lock()
	before := *e.rec
	r := e.rec
	r.RuntimeID = m.rec.RuntimeID
	r.Image, r.Envd = m.rec.Image, m.rec.Envd
	r.VCPUs, r.MemoryMB, r.DiskMB = m.rec.VCPUs, m.rec.MemoryMB, m.rec.DiskMB
	if r.DefaultUser == "" {
		r.DefaultUser = m.rec.DefaultUser
	}
	r.DefaultEnv = mergeEnv(m.rec.DefaultEnv, r.DefaultEnv)
	r.Network, r.HostIP = m.rec.Network, m.rec.HostIP
	a.mu.Unlock()
	fail := func(err error) (Info, error) {
		bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = a.rt.Destroy(bg, m.rec.RuntimeID)
		_ = a.net.Teardown(bg, m.rec.RuntimeID)
		_ = os.RemoveAll(a.dirs.poolMember(m.rec.RuntimeID))
		_ = os.RemoveAll(a.dirs.capsule(before.ID))
		a.mu.Lock()
		*e.rec = before
		a.mu.Unlock()
		return Info{}, err
	}
	if err := os.Rename(a.dirs.poolMember(m.rec.RuntimeID), a.dirs.capsule(before.ID)); err != nil {
		return fail(err)
	}
	if err := a.setStatus(e, StatusCreating, nil); err != nil {
		return fail(err)
	}
	rc := a.snapshotRec(e)
	if err := a.writeMetadata(&rc); err != nil {
		return fail(err)
	}
	envdVer, err := a.initEnvd(ctx, &rc, m.prior)
	if err != nil {
		return fail(err)
	}
	if err := a.setStatus(e, StatusRunning, func(r *record) {
		r.LastActiveAt, r.EnvdVersion = time.Now().UTC(), envdVer
	}); err != nil {
		return fail(err)
	}
	return a.Info(rc.ID)
}

// memoryHeadroom reports the host's available memory and the floor pools
// keep above it (Config.PoolMemoryFloorMB, default a tenth of the host's
// memory), in MB; ok is false when it cannot be read.
func (a *Agent) memoryHeadroom() (avail, floor int64, ok bool) {
	avail, total, err := a.cfg.MemInfo()
	if err != nil {
		return 0, 0, false
	}
	floor = a.cfg.PoolMemoryFloorMB
	if floor <= 0 {
		floor = total / 10
	}
	return avail, floor, true
}

// hostMemInfo reads MemAvailable and MemTotal from /proc/meminfo, in MB.
func hostMemInfo() (avail, total int64, err error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			continue
		}
		switch string(f[0]) {
		case "MemAvailable:":
			avail = kb / 1024
		case "MemTotal:":
			total = kb / 1024
		}
	}
	if total == 0 {
		return 0, 0, errors.New("no MemTotal in /proc/meminfo")
	}
	return avail, total, nil
}
