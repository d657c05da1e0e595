package hostapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/envd/defaults"
	"github.com/wrenn/wrenn/internal/envd/metadata"
	"github.com/wrenn/wrenn/internal/envd/ports"
)

// do sends one request straight to h.
func do(h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func newHost(t *testing.T, cfg Config) *host {
	t.Helper()
	if cfg.Defaults == nil {
		cfg.Defaults = defaults.New(map[string]string{"PATH": "/bin"})
	}
	return New(cfg).(*host)
}

// idlePorts returns a stopped port subsystem that sees no sockets and no
// external address, so it forwards nothing.
func idlePorts(t *testing.T) *ports.Subsystem {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte("  sl  local_address rem_address   st\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := ports.New(ports.Config{
		Interval: 5 * time.Millisecond,
		ProcNet:  dir,
		Addrs:    func() ([]netip.Addr, error) { return nil, nil },
	})
	t.Cleanup(s.Stop)
	return s
}

func wantError(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d (body %s)", w.Code, status, w.Body)
	}
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != status || e.Message == "" {
		t.Fatalf("error body %q: want {code:%d, message}", w.Body, status)
	}
}

func TestHealth(t *testing.T) {
	h := newHost(t, Config{Version: "0.6.4"})
	w := do(h, http.MethodGet, "/health", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["version"] != "0.6.4" || len(body) != 1 {
		t.Fatalf("body %s: want {\"version\":\"0.6.4\"}", w.Body)
	}
}

func TestMethodsAndPaths(t *testing.T) {
	h := newHost(t, Config{Ports: idlePorts(t)})
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{http.MethodPost, "/health", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodGet, "/init", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, "/init", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/snapshot/prepare", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/envs", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodDelete, "/metrics", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodGet, "/nope", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path, func(t *testing.T) {
			w := do(h, tt.method, tt.path, "")
			wantError(t, w, tt.want)
			if got := w.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestEnvs(t *testing.T) {
	d := defaults.New(map[string]string{"PATH": "/bin", "A": "1"})
	h := newHost(t, Config{Defaults: d})
	d.SetEnv("B", "2")
	w := do(h, http.MethodGet, "/envs", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d", w.Code)
	}
	var env map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
		t.Fatal(err)
	}
	if len(env) != 3 || env["A"] != "1" || env["B"] != "2" || env["PATH"] != "/bin" {
		t.Fatalf("env %v", env)
	}
}

func TestSnapshotPrepare(t *testing.T) {
	p := idlePorts(t)
	h := newHost(t, Config{Ports: p})
	if w := do(h, http.MethodPost, "/init", ""); w.Code != http.StatusNoContent {
		t.Fatalf("init: %d", w.Code)
	}
	if !p.Running() {
		t.Fatal("/init did not start the port subsystem")
	}
	for range 2 { // idempotent
		w := do(h, http.MethodPost, "/snapshot/prepare", "")
		if w.Code != http.StatusNoContent || w.Header().Get("Cache-Control") != "no-store" || w.Body.Len() != 0 {
			t.Fatalf("prepare: %d %q %q", w.Code, w.Header().Get("Cache-Control"), w.Body)
		}
		if p.Running() {
			t.Fatal("port subsystem still running after /snapshot/prepare")
		}
	}
	if w := do(h, http.MethodPost, "/init", ""); w.Code != http.StatusNoContent || !p.Running() {
		t.Fatalf("init after prepare: %d, running %v", w.Code, p.Running())
	}
	// Without a port subsystem both still succeed.
	h2 := newHost(t, Config{})
	for _, path := range []string{"/snapshot/prepare", "/init"} {
		if w := do(h2, http.MethodPost, path, ""); w.Code != http.StatusNoContent {
			t.Fatalf("%s without ports: %d", path, w.Code)
		}
	}
}

func TestMetrics(t *testing.T) {
	h := newHost(t, Config{})
	for range 2 { // the first call samples, the second uses the delta
		start := time.Now()
		w := do(h, http.MethodGet, "/metrics", "")
		if w.Code != http.StatusOK {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		var raw map[string]json.Number
		dec := json.NewDecoder(w.Body)
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"ts", "cpu_count", "cpu_used_pct", "mem_total", "mem_used", "mem_cache",
			"disk_used", "disk_total", "mem_total_mib", "mem_used_mib"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("missing %s in %v", k, raw)
			}
		}
		num := func(k string) float64 { f, _ := raw[k].Float64(); return f }
		if ts := num("ts"); ts < float64(start.Unix()-1) || ts > float64(time.Now().Unix()+1) {
			t.Errorf("ts %v not now", ts)
		}
		if num("cpu_count") != float64(runtime.NumCPU()) {
			t.Errorf("cpu_count %v", num("cpu_count"))
		}
		if p := num("cpu_used_pct"); p < 0 || p > 100 || p*100 != float64(int64(p*100)) {
			t.Errorf("cpu_used_pct %v: want 0–100 with 2 decimals", p)
		}
		if num("mem_total") <= 0 || num("mem_used") <= 0 || num("mem_used") > num("mem_total") {
			t.Errorf("mem_used %v / mem_total %v", num("mem_used"), num("mem_total"))
		}
		if num("disk_total") <= 0 || num("disk_used") > num("disk_total") {
			t.Errorf("disk_used %v / disk_total %v", num("disk_used"), num("disk_total"))
		}
		if num("mem_total_mib") != float64(int64(num("mem_total"))>>20) {
			t.Errorf("mem_total_mib %v", num("mem_total_mib"))
		}
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    cpuTimes
		wantErr bool
	}{
		{"full", "cpu  100 5 50 800 20 1 2 3 7 0\ncpu0 1 2 3 4\n", cpuTimes{idle: 820, total: 981}, false},
		{"old kernel, 4 fields", "cpu 10 0 10 80\n", cpuTimes{idle: 80, total: 100}, false},
		{"not cpu", "intr 1 2 3 4 5\n", cpuTimes{}, true},
		{"bad number", "cpu 1 x 3 4 5\n", cpuTimes{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuTimes
		want      float64
		ok        bool
	}{
		{"half busy", cpuTimes{100, 200}, cpuTimes{150, 300}, 50, true},
		{"rounding", cpuTimes{0, 0}, cpuTimes{2, 3}, 33.33, true},
		{"idle", cpuTimes{0, 0}, cpuTimes{10, 10}, 0, true},
		{"busy", cpuTimes{5, 10}, cpuTimes{5, 20}, 100, true},
		{"no time passed", cpuTimes{5, 10}, cpuTimes{5, 10}, 0, false},
		{"counter went back", cpuTimes{50, 100}, cpuTimes{40, 110}, 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := usage(tt.prev, tt.cur)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("usage = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseMeminfo(t *testing.T) {
	full := "MemTotal:       2048000 kB\nMemFree:  100 kB\nMemAvailable:   1024000 kB\nBuffers: 10 kB\nCached:   512 kB\nSwapCached: 1 kB\n"
	tests := []struct {
		name    string
		in      string
		want    meminfo
		wantErr bool
	}{
		{"full", full, meminfo{total: 2048000 << 10, available: 1024000 << 10, cached: 512 << 10}, false},
		{"no available", "MemTotal: 10 kB\n", meminfo{}, true},
		{"bad value", "MemTotal: x kB\nMemAvailable: 1 kB\n", meminfo{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMeminfo([]byte(tt.in))
			if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
				t.Fatalf("got %+v, %v; want %+v, err %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	m, _ := parseMeminfo([]byte(full))
	if m.used() != (2048000-1024000)<<10 {
		t.Fatalf("used %d", m.used())
	}
}

func TestMetricsCanceledFirstSample(t *testing.T) {
	h := newHost(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.cpu.usedPct(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want canceled", err)
	}
}

// fakeMeta is a metadata source whose answer the test changes.
type fakeMeta struct {
	m   metadata.Metadata
	err error
}

func (f *fakeMeta) Read(context.Context) (metadata.Metadata, error) { return f.m, f.err }
