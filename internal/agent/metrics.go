package agent

import (
	"context"
	"fmt"
	"time"
)

// Metrics tiers: the newest samples at full resolution, and two coarser
// tiers of averages, each a fixed-size ring.
const (
	tier10mLen = 120 // 10 min at 5 s
	tier2hLen  = 120 // 2 h at 1 min
	tier24hLen = 144 // 24 h at 10 min
	per2h      = 12  // 5 s samples per 1 min point (at the default interval)
	per24h     = 10  // 1 min points per 10 min point
)

// ring is a fixed-capacity FIFO of points.
type ring struct {
	buf  []MetricPoint
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]MetricPoint, n)} }

func (r *ring) add(p MetricPoint) {
	r.buf[r.next] = p
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

func (r *ring) points() []MetricPoint {
	if !r.full {
		return append([]MetricPoint(nil), r.buf[:r.next]...)
	}
	return append(append([]MetricPoint(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// series holds one capsule's tiers and what is needed to derive CPU %.
type series struct {
	tiers    [3]*ring
	pend2h   []MetricPoint
	pend24h  []MetricPoint
	lastCPU  uint64
	lastAt   time.Time
	haveLast bool
}

func newSeries() *series {
	return &series{tiers: [3]*ring{newRing(tier10mLen), newRing(tier2hLen), newRing(tier24hLen)}}
}

func (s *series) add(p MetricPoint) {
	s.tiers[Range10m].add(p)
	s.pend2h = append(s.pend2h, p)
	if len(s.pend2h) < per2h {
		return
	}
	m := average(s.pend2h)
	s.pend2h = s.pend2h[:0]
	s.tiers[Range2h].add(m)
	s.pend24h = append(s.pend24h, m)
	if len(s.pend24h) < per24h {
		return
	}
	s.tiers[Range24h].add(average(s.pend24h))
	s.pend24h = s.pend24h[:0]
}

func average(ps []MetricPoint) MetricPoint {
	var out MetricPoint
	for _, p := range ps {
		out.CPUPct += p.CPUPct
		out.MemBytes += p.MemBytes
		out.DiskBytes += p.DiskBytes
	}
	n := uint64(len(ps))
	out.CPUPct /= float64(n)
	out.MemBytes /= n
	out.DiskBytes /= n
	out.At = ps[len(ps)-1].At
	return out
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

// sample records one point for every running capsule.
func (a *Agent) sample() {
	a.mu.Lock()
	var ids []string
	for id, e := range a.capsules {
		if e.rec.Status == StatusRunning {
			ids = append(ids, id)
		}
	}
	a.mu.Unlock()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := a.rt.Stats(ctx, id)
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
			s = newSeries()
			a.metrics[id] = s
		}
		p := MetricPoint{At: st.At, MemBytes: st.MemBytes, DiskBytes: st.DiskBytes}
		if s.haveLast && st.At.After(s.lastAt) && st.CPUNanos >= s.lastCPU {
			wall := st.At.Sub(s.lastAt).Nanoseconds()
			p.CPUPct = float64(st.CPUNanos-s.lastCPU) / float64(wall) / float64(max(e.rec.VCPUs, 1)) * 100
		}
		s.lastCPU, s.lastAt, s.haveLast = st.CPUNanos, st.At, true
		s.add(p)
		a.mu.Unlock()
	}
}

// Metrics returns one tier of a capsule's samples, oldest first.
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
// deleted). Templates stay on disk until the host's data is removed.
func (a *Agent) Terminate(ctx context.Context) error {
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
