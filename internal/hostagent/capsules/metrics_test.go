package capsules

import (
	"math"
	"testing"
	"time"
)

func TestRingKeepsNewest(t *testing.T) {
	r := newRing(3)
	if len(r.appendTo(nil)) != 0 {
		t.Fatal("new ring not empty")
	}
	for i := 1; i <= 5; i++ {
		r.add(sample{cpu: float64(i)})
	}
	got := r.appendTo(nil)
	if len(got) != 3 || got[0].cpu != 3 || got[2].cpu != 5 {
		t.Fatalf("samples %+v", got)
	}
}

// feed adds n samples every step from start; sample i has CPU i%60 and
// memory 1000+i.
func feed(s *series, start time.Time, step time.Duration, n int) {
	for i := range n {
		s.add(MetricPoint{At: start.Add(time.Duration(i) * step), CPUPct: float64(i % 60), MemBytes: uint64(1000 + i), DiskBytes: 7})
	}
}

func TestSeriesTiers(t *testing.T) {
	const every = 500 * time.Millisecond
	s := newSeries(every)
	start := time.Unix(1_699_999_800, 0) // a multiple of 5 min
	n := int(3 * time.Hour / every)      // 21600 samples
	feed(s, start, every, n)
	last := start.Add(time.Duration(n-1) * every)

	// 10m: every sample of the last 10 minutes.
	raw := s.tiers[Range10m].points()
	if len(raw) != 1200 {
		t.Fatalf("10m tier holds %d points, want 1200", len(raw))
	}
	if !raw[len(raw)-1].At.Equal(last) || raw[1].At.Sub(raw[0].At) != every {
		t.Fatalf("10m tier spans %v..%v", raw[0].At, raw[len(raw)-1].At)
	}
	if last.Sub(raw[0].At) >= 10*time.Minute {
		t.Fatalf("10m tier reaches back %v", last.Sub(raw[0].At))
	}

	// 2h: 30 s averages (60 samples each) on 30 s boundaries, the newest
	// bucket complete here as well.
	twoH := s.tiers[Range2h].points()
	if len(twoH) != 240 {
		t.Fatalf("2h tier holds %d points, want 240", len(twoH))
	}
	for i, p := range twoH {
		if p.At.Unix()%30 != 0 || (i > 0 && p.At.Sub(twoH[i-1].At) != 30*time.Second) {
			t.Fatalf("2h point %d at %v", i, p.At)
		}
	}
	// Bucket k holds samples 60k..60k+59: CPU 0..59 → 29.5; memory
	// 1000+60k..1000+60k+59 → 1000+60k+29 (integer mean).
	p := twoH[0]
	k := uint64(p.At.Sub(start) / (30 * time.Second))
	if p.CPUPct != 29.5 || p.MemBytes != 1000+60*k+29 || p.DiskBytes != 7 {
		t.Fatalf("2h point %+v (bucket %d)", p, k)
	}
	if got := twoH[len(twoH)-1].At; !got.Equal(last.Truncate(30 * time.Second)) {
		t.Fatalf("newest 2h point at %v", got)
	}

	// 24h: 5 min averages of the samples themselves: 36 over 3 h.
	day := s.tiers[Range24h].points()
	if len(day) != 36 {
		t.Fatalf("24h tier holds %d points, want 36", len(day))
	}
	if day[0].CPUPct != 29.5 || day[0].MemBytes != 1000+299 || !day[0].At.Equal(start) {
		t.Fatalf("24h point %+v", day[0])
	}
}

// A bucket still filling is returned with its average so far, and a
// 24 h tier that wrapped keeps only the last 24 h.
func TestTierPartialBucketAndWrap(t *testing.T) {
	s := newSeries(time.Minute)
	start := time.Unix(1_699_999_800, 0)
	feed(s, start, time.Minute, 26*60+2) // 26 h and 2 min
	day := s.tiers[Range24h].points()
	if len(day) != 288 {
		t.Fatalf("24h tier holds %d points, want 288", len(day))
	}
	newest := day[len(day)-1]
	// The last bucket holds the samples at 26h+0 and 26h+1 min.
	if !newest.At.Equal(start.Add(26*time.Hour)) || newest.MemBytes != 1000+26*60 {
		t.Fatalf("partial 24h point %+v", newest)
	}
	if got := newest.At.Sub(day[0].At); got != 24*time.Hour-5*time.Minute {
		t.Fatalf("24h tier spans %v", got)
	}
	// One sample per minute: each 30 s bucket holds one sample.
	twoH := s.tiers[Range2h].points()
	if len(twoH) != 120 || twoH[len(twoH)-1].MemBytes != 1000+26*60+1 {
		t.Fatalf("2h tier: %d points, newest %+v", len(twoH), twoH[len(twoH)-1])
	}
}

// Samples that skip buckets (ticks lost, a pause) leave no empty points,
// and every average covers only its own bucket.
func TestTierGaps(t *testing.T) {
	s := newSeries(time.Second)
	start := time.Unix(1_699_999_800, 0)
	feed(s, start, time.Second, 30)                    // one full 30 s bucket, CPU 0..29
	feed(s, start.Add(11*time.Minute), time.Second, 3) // after a gap, CPU 0..2
	twoH := s.tiers[Range2h].points()
	if len(twoH) != 2 || twoH[0].CPUPct != 14.5 || twoH[1].CPUPct != 1 {
		t.Fatalf("2h tier %+v", twoH)
	}
	if raw := s.tiers[Range10m].points(); len(raw) != 3 {
		// The first 30 samples lie more than 10 min before the newest.
		t.Fatalf("10m tier holds %d points", len(raw))
	}
	if day := s.tiers[Range24h].points(); len(day) != 2 || math.Abs(day[0].CPUPct-14.5) > 1e-9 {
		t.Fatalf("24h tier %+v", day)
	}
}

func TestRingSizes(t *testing.T) {
	for every, want := range map[time.Duration]int{500 * time.Millisecond: 1200, 200 * time.Millisecond: 3000, 7 * time.Second: 86} {
		if got := len(newSeries(every).tiers[Range10m].done.buf); got != want {
			t.Errorf("10m ring at %v holds %d, want %d", every, got, want)
		}
	}
	s := newSeries(time.Second)
	if len(s.tiers[Range2h].done.buf) != 240 || len(s.tiers[Range24h].done.buf) != 288 {
		t.Fatal("2h/24h rings sized wrong")
	}
}

func TestRuntimeMetadata(t *testing.T) {
	a := &Agent{versions: runtimeVersions(map[string]string{MetaAgentVersion: "v1", MetaRunscVersion: "r1"})}
	if a.versions[MetaKernelVersion] == "" || a.versions[MetaKernelVersion] != kernelRelease() {
		t.Fatalf("kernel_version %q", a.versions[MetaKernelVersion])
	}
	m := a.runtimeMetadata(&record{EnvdVersion: "0.6.4"})
	want := map[string]string{MetaAgentVersion: "v1", MetaRunscVersion: "r1", MetaEnvdVersion: "0.6.4", MetaKernelVersion: kernelRelease()}
	if len(m) != len(want) {
		t.Fatalf("metadata %v", m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("metadata %v, want %v", m, want)
		}
	}
	// Each capsule gets its own map.
	m[MetaAgentVersion] = "changed"
	if a.versions[MetaAgentVersion] != "v1" {
		t.Fatal("metadata shares the agent's map")
	}
	if got := runtimeVersions(map[string]string{MetaKernelVersion: "k"})[MetaKernelVersion]; got != "k" {
		t.Fatalf("configured kernel_version replaced by %q", got)
	}
}

func TestValidName(t *testing.T) {
	for s, want := range map[string]bool{
		"tpl-1": true, "team-0abc": true, "a.b_c": true,
		"": false, ".": false, "..": false, "a/b": false, "../x": false, "a b": false,
	} {
		if validName(s) != want {
			t.Errorf("validName(%q) = %v", s, !want)
		}
	}
}

func TestLinkTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()+"/copy"
	writeFile(t, src+"/a", "aaa")
	writeFile(t, src+"/sub/b", "bb")
	n, err := linkTree(src, dst)
	if err != nil || n != 5 {
		t.Fatalf("linkTree: %d bytes, %v", n, err)
	}
	for p, want := range map[string]string{dst + "/a": "aaa", dst + "/sub/b": "bb"} {
		if got := readFile(t, p); got != want {
			t.Errorf("%s holds %q", p, got)
		}
	}
}

// Idle capsules are sampled every MetricsIdleEvery; open calls, activity
// since the last sample, CPU use at the last sample or a recent read of the
// metrics bring back every round.
func TestMetricsDue(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := &Agent{cfg: Config{MetricsEvery: 500 * time.Millisecond, MetricsIdleEvery: 10 * time.Second}, metrics: map[string]*series{}}
	idle := func() (*entry, *series) {
		s := newSeries(a.cfg.MetricsEvery)
		s.haveLast, s.lastAt, s.lastCPUPct = true, now.Add(-time.Second), 0.3
		return &entry{rec: &record{LastActiveAt: now.Add(-time.Minute)}}, s
	}
	for _, c := range []struct {
		name   string
		change func(e *entry, s *series)
		want   bool
	}{
		{"idle, sampled a second ago", func(*entry, *series) {}, false},
		{"idle, interval nearly passed", func(_ *entry, s *series) { s.lastAt = now.Add(-9800 * time.Millisecond) }, true},
		{"never sampled", func(_ *entry, s *series) { s.haveLast = false }, true},
		{"open call", func(e *entry, _ *series) { e.busy = 1 }, true},
		{"active since the last sample", func(e *entry, _ *series) { e.rec.LastActiveAt = now.Add(-100 * time.Millisecond) }, true},
		{"busy at the last sample", func(_ *entry, s *series) { s.lastCPUPct = 40 }, true},
		{"metrics read recently", func(_ *entry, s *series) { s.readUntil = now.Add(time.Minute) }, true},
		{"metrics read long ago", func(_ *entry, s *series) { s.readUntil = now.Add(-time.Second) }, false},
	} {
		e, s := idle()
		c.change(e, s)
		a.metrics["c"] = s
		if got := a.dueLocked("c", e, now); got != c.want {
			t.Errorf("%s: due = %v, want %v", c.name, got, c.want)
		}
	}
	delete(a.metrics, "c")
	if e, _ := idle(); !a.dueLocked("c", e, now) {
		t.Error("no series yet: not due")
	}
}
