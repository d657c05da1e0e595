package hostapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/envd/httpjson"
)

// cpuSampleWindow is how long the first /metrics call samples /proc/stat;
// later calls use the delta since the previous call.
const cpuSampleWindow = 100 * time.Millisecond

type metricsResponse struct {
	Timestamp   int64   `json:"ts"`
	CPUCount    int     `json:"cpu_count"`
	CPUUsedPct  float64 `json:"cpu_used_pct"`
	MemTotal    uint64  `json:"mem_total"`
	MemUsed     uint64  `json:"mem_used"`
	MemCache    uint64  `json:"mem_cache"`
	DiskUsed    uint64  `json:"disk_used"`
	DiskTotal   uint64  `json:"disk_total"`
	MemTotalMiB uint64  `json:"mem_total_mib"`
	MemUsedMiB  uint64  `json:"mem_used_mib"`
}

func (h *host) metrics(w http.ResponseWriter, r *http.Request) {
	pct, err := h.cpu.usedPct(r.Context())
	if err != nil {
		httpjson.Error(w, http.StatusInternalServerError, "cpu usage: %v", err)
		return
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		httpjson.Error(w, http.StatusInternalServerError, "memory usage: %v", err)
		return
	}
	mem, err := parseMeminfo(b)
	if err != nil {
		httpjson.Error(w, http.StatusInternalServerError, "memory usage: %v", err)
		return
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		httpjson.Error(w, http.StatusInternalServerError, "disk usage: %v", err)
		return
	}
	diskTotal := st.Blocks * uint64(st.Bsize)
	diskAvail := st.Bavail * uint64(st.Bsize)
	httpjson.Write(w, http.StatusOK, metricsResponse{
		Timestamp:   time.Now().UTC().Unix(),
		CPUCount:    runtime.NumCPU(),
		CPUUsedPct:  pct,
		MemTotal:    mem.total,
		MemUsed:     mem.used(),
		MemCache:    mem.cached,
		DiskUsed:    diskTotal - diskAvail,
		DiskTotal:   diskTotal,
		MemTotalMiB: mem.total >> 20,
		MemUsedMiB:  mem.used() >> 20,
	})
}

type meminfo struct {
	total, available, cached uint64 // bytes
}

// used follows free(1) and E2B: total minus available.
func (m meminfo) used() uint64 {
	if m.available > m.total {
		return 0
	}
	return m.total - m.available
}

// parseMeminfo reads MemTotal, MemAvailable and Cached (kB) from
// /proc/meminfo.
func parseMeminfo(b []byte) (meminfo, error) {
	var m meminfo
	var seenTotal, seenAvail bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *uint64
		switch key {
		case "MemTotal":
			dst, seenTotal = &m.total, true
		case "MemAvailable":
			dst, seenAvail = &m.available, true
		case "Cached":
			dst = &m.cached
		default:
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return m, fmt.Errorf("meminfo %s: no value", key)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("meminfo %s: %w", key, err)
		}
		*dst = v * 1024
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !seenTotal || !seenAvail {
		return m, fmt.Errorf("meminfo: MemTotal or MemAvailable missing")
	}
	return m, nil
}

// cpuTimes are the aggregate jiffies of the first /proc/stat line.
type cpuTimes struct {
	idle, total uint64
}

// parseStat reads the aggregate "cpu" line of /proc/stat. Idle includes
// iowait; guest time is already counted in user and nice, so it is left out
// of the total.
func parseStat(b []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var t cpuTimes
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		t.total += v
		if i == 3 || i == 4 { // idle, iowait
			t.idle += v
		}
	}
	return t, nil
}

// usage returns the busy share between two samples in percent, 2 decimals,
// and false when no time passed between them.
func usage(prev, cur cpuTimes) (float64, bool) {
	if cur.total <= prev.total {
		return 0, false
	}
	dt := float64(cur.total - prev.total)
	di := float64(cur.idle - prev.idle)
	if cur.idle < prev.idle {
		di = 0
	}
	pct := 100 * (1 - di/dt)
	pct = math.Max(0, math.Min(100, pct))
	return math.Round(pct*100) / 100, true
}

// cpuSampler computes CPU usage from /proc/stat deltas between calls.
type cpuSampler struct {
	statPath string

	mu      sync.Mutex // guards the fields below
	last    cpuTimes
	lastPct float64
	have    bool
}

func (c *cpuSampler) read() (cpuTimes, error) {
	b, err := os.ReadFile(c.statPath)
	if err != nil {
		return cpuTimes{}, err
	}
	return parseStat(b)
}

func (c *cpuSampler) usedPct(ctx context.Context) (float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.have {
		first, err := c.read()
		if err != nil {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(cpuSampleWindow):
		}
		c.last, c.have = first, true
	}
	cur, err := c.read()
	if err != nil {
		return 0, err
	}
	if pct, ok := usage(c.last, cur); ok {
		c.last, c.lastPct = cur, pct
	}
	// Called again within one jiffy: report the previous value.
	return c.lastPct, nil
}
