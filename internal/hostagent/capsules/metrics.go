package capsules

import (
	"context"
	"fmt"
	"time"
)

// DefaultMetricsEvery is the default sampling interval.
const DefaultMetricsEvery = 500 * time.Millisecond

// DefaultMetricsIdleEvery is the default sampling interval of idle capsules
// (docs/agent.md#metrics).
const DefaultMetricsIdleEvery = 30 * time.Second

const (
	// idleCPUPct is the CPU share (% of the capsule's vCPUs) below which a
	// sample counts as idle; an idle gVisor sandbox uses well under 1 %.
	idleCPUPct = 2.0
	// readKeepsFast is how long reading a capsule's metrics keeps it sampled
	// every MetricsEvery, so a dashboard polling them sees full resolution.
	readKeepsFast = 2 * time.Minute
)

// Metrics tiers (docs/api.md): every sample of the last 10 minutes,
// 30 s averages over 2 hours and 5 min averages over 24 hours. Averages
// are taken over the samples that fall into wall-clock-aligned buckets, so
// dropped ticks or a changed interval do not skew them.
var tierShapes = [3]struct {
	span  time.Duration // how far back the tier reaches
	width time.Duration // averaging bucket; 0 keeps samples as they are
}{
	Range10m: {span: 10 * time.Minute},
	Range2h:  {span: 2 * time.Hour, width: 30 * time.Second},
	Range24h: {span: 24 * time.Hour, width: 5 * time.Minute},
}

// sample is a MetricPoint kept compactly: no pointers for the garbage
// collector to scan in thousands of points per capsule.
type sample struct {
	at   int64 // Unix nanoseconds
	cpu  float64
	mem  uint64
	disk uint64
}

func (s sample) point() MetricPoint {
	return MetricPoint{At: time.Unix(0, s.at).UTC(), CPUPct: s.cpu, MemBytes: s.mem, DiskBytes: s.disk}
}

// ring is a fixed-capacity FIFO of samples.
type ring struct {
	buf  []sample
	next int
	full bool
}

func newRing(n int) ring { return ring{buf: make([]sample, max(n, 1))} }

func (r *ring) add(s sample) {
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// appendTo appends the samples oldest first.
func (r *ring) appendTo(out []sample) []sample {
	if r.full {
		out = append(out, r.buf[r.next:]...)
	}
	return append(out, r.buf[:r.next]...)
}

// bucket sums the samples of one averaging period.
type bucket struct {
	start     int64 // Unix ns, a multiple of the tier's width
	n         int
	cpu       float64
	mem, disk uint64
}

func (b *bucket) add(s sample) {
	b.n++
	b.cpu += s.cpu
	b.mem += s.mem
	b.disk += s.disk
}

// mean is the bucket's average, stamped with the bucket's start.
func (b *bucket) mean() sample {
	n := uint64(b.n)
	return sample{at: b.start, cpu: b.cpu / float64(b.n), mem: b.mem / n, disk: b.disk / n}
}

// tier is one resolution of a capsule's metrics.
type tier struct {
	span  int64 // ns
	width int64 // ns; 0: raw samples
	done  ring  // samples, or the means of completed buckets
	cur   bucket
}

func newTier(span, width, every time.Duration) tier {
	step := width
	if step == 0 {
		step = every
	}
	n := int((span + step - 1) / step)
	return tier{span: int64(span), width: int64(width), done: newRing(n)}
}

func (t *tier) add(s sample) {
	if t.width == 0 {
		t.done.add(s)
		return
	}
	start := s.at - s.at%t.width // samples are after 1970
	if t.cur.n > 0 && start != t.cur.start {
		t.done.add(t.cur.mean())
		t.cur = bucket{}
	}
	if t.cur.n == 0 {
		t.cur.start = start
	}
	t.cur.add(s)
}

// points returns the tier oldest first, the bucket still filling last (its
// average so far), leaving out what lies more than the tier's span before
// the newest point.
func (t *tier) points() []MetricPoint {
	ss := t.done.appendTo(make([]sample, 0, len(t.done.buf)+1))
	if t.cur.n > 0 {
		ss = append(ss, t.cur.mean())
	}
	if len(ss) == 0 {
		return nil
	}
	cutoff := ss[len(ss)-1].at - t.span
	out := make([]MetricPoint, 0, len(ss))
	for _, s := range ss {
		if s.at > cutoff {
			out = append(out, s.point())
		}
	}
	return out
}

// series holds one capsule's tiers and what is needed to derive CPU %.
type series struct {
	tiers      [3]tier
	lastCPU    uint64
	lastAt     time.Time
	haveLast   bool
	lastCPUPct float64   // CPU % of the newest sample
	readUntil  time.Time // sampled at full rate until then: someone reads the metrics
}

func newSeries(every time.Duration) *series {
	s := &series{}
	for i, sh := range tierShapes {
		s.tiers[i] = newTier(sh.span, sh.width, every)
	}
	return s
}

func (s *series) add(p MetricPoint) {
	smp := sample{at: p.At.UnixNano(), cpu: p.CPUPct, mem: p.MemBytes, disk: p.DiskBytes}
	for i := range s.tiers {
		s.tiers[i].add(smp)
	}
}

func (a *Agent) metricsLoop() {
	defer a.bg.Done()
	t := time.NewTicker(a.cfg.MetricsEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.sample()
		}
	}
}

// sample records one point for every running capsule that is due.
func (a *Agent) sample() {
	now := time.Now()
	a.mu.Lock()
	var ids, rids []string
	for id, e := range a.capsules {
		if e.rec.Status == StatusRunning && a.dueLocked(id, e, now) {
			ids, rids = append(ids, id), append(rids, e.rec.rid())
		}
	}
	a.mu.Unlock()
	for i, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := a.rt.Stats(ctx, rids[i])
		cancel()
		if err != nil {
			continue // gone or pausing meanwhile
		}
		a.mu.Lock()
		e, ok := a.capsules[id]
		if !ok || e.rec.Status != StatusRunning {
			a.mu.Unlock()
			continue
		}
		s := a.metrics[id]
		if s == nil {
			s = newSeries(a.cfg.MetricsEvery)
			a.metrics[id] = s
		}
		p := MetricPoint{At: st.At, MemBytes: st.MemBytes, DiskBytes: st.DiskBytes}
		if s.haveLast && st.At.After(s.lastAt) && st.CPUNanos >= s.lastCPU {
			wall := st.At.Sub(s.lastAt).Nanoseconds()
			// 0–100 of the capsule's vCPUs (the sandbox's own overhead can push the raw share past it).
			p.CPUPct = min(float64(st.CPUNanos-s.lastCPU)/float64(wall)/float64(max(e.rec.VCPUs, 1))*100, 100)
		}
		s.lastCPU, s.lastAt, s.haveLast, s.lastCPUPct = st.CPUNanos, st.At, true, p.CPUPct
		s.add(p)
		a.mu.Unlock()
	}
}

// dueLocked reports whether capsule id is sampled in the round at now: every
// round while it has open calls, was active since its last sample, used CPU
// at its last sample or has its metrics read; otherwise every
// MetricsIdleEvery (docs/agent.md#metrics). The caller holds a.mu.
func (a *Agent) dueLocked(id string, e *entry, now time.Time) bool {
	s := a.metrics[id]
	switch {
	case s == nil || !s.haveLast,
		e.busy > 0,
		e.rec.LastActiveAt.After(s.lastAt),
		s.lastCPUPct >= idleCPUPct,
		now.Before(s.readUntil):
		return true
	}
	// Half a round of slack, so ticker jitter does not push a sample a
	// whole round late.
	return now.Sub(s.lastAt) >= a.cfg.MetricsIdleEvery-a.cfg.MetricsEvery/2
}

// Metrics returns one tier of a capsule's samples, oldest first. Reading
// keeps the capsule sampled at full rate for a while.
func (a *Agent) Metrics(_ context.Context, id string, r MetricsRange) ([]MetricPoint, error) {
	if r < Range10m || r > Range24h {
		return nil, fmt.Errorf("%w: metrics range %d", ErrInvalid, r)
	}
	if _, err := a.lookup(id); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.metrics[id]
	if s == nil {
		return nil, nil
	}
	s.readUntil = time.Now().Add(readKeepsFast)
	return s.tiers[r].points(), nil
}

// FlushMetrics hands over every tier and forgets them (the control plane
// stores them when a capsule pauses or goes away).
func (a *Agent) FlushMetrics(_ context.Context, id string) ([3][]MetricPoint, error) {
	var out [3][]MetricPoint
	if _, err := a.lookup(id); err != nil {
		return out, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.metrics[id]; s != nil {
		for i := range out {
			out[i] = s.tiers[i].points()
		}
		delete(a.metrics, id)
	}
	return out, nil
}

// Terminate destroys every capsule on this host (the host is being
// deleted), warm pool members first. Templates stay on disk until the
// host's data is removed.
func (a *Agent) Terminate(ctx context.Context) error {
	a.mu.Lock()
	var keys []poolKey
	for k := range a.pools {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	for _, k := range keys {
		a.dropPool(k.team, k.template)
	}
	a.mu.Lock()
	var es []*entry
	for _, e := range a.capsules {
		es = append(es, e)
	}
	a.mu.Unlock()
	var errs []error
	for _, e := range es {
		e.op.Lock()
		if err := a.discard(ctx, e); err != nil {
			errs = append(errs, err)
		}
		e.op.Unlock()
	}
	if len(errs) > 0 {
		return fmt.Errorf("terminate: %d capsules not fully removed: %v", len(errs), errs[0])
	}
	return nil
}
