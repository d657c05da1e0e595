package agent

import (
	"testing"
	"time"
)

func TestRingKeepsNewest(t *testing.T) {
	r := newRing(3)
	if len(r.points()) != 0 {
		t.Fatal("new ring not empty")
	}
	for i := 1; i <= 5; i++ {
		r.add(MetricPoint{CPUPct: float64(i)})
	}
	got := r.points()
	if len(got) != 3 || got[0].CPUPct != 3 || got[2].CPUPct != 5 {
		t.Fatalf("points %+v", got)
	}
}

func TestSeriesTiers(t *testing.T) {
	s := newSeries()
	start := time.Unix(0, 0)
	n := per2h * per24h * 2 // two 24 h points
	for i := range n {
		s.add(MetricPoint{At: start.Add(time.Duration(i) * 5 * time.Second), CPUPct: float64(i % per2h), MemBytes: 100})
	}
	if got := len(s.tiers[Range10m].points()); got != tier10mLen {
		t.Fatalf("10m tier holds %d", got)
	}
	twoH := s.tiers[Range2h].points()
	if len(twoH) != n/per2h {
		t.Fatalf("2h tier holds %d, want %d", len(twoH), n/per2h)
	}
	// Each 1 min point averages 0..11.
	if twoH[0].CPUPct != 5.5 || twoH[0].MemBytes != 100 {
		t.Fatalf("2h point %+v", twoH[0])
	}
	if got := len(s.tiers[Range24h].points()); got != 2 {
		t.Fatalf("24h tier holds %d", got)
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
