package metrics

import (
	"bufio"
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
)

// states are reported even when no capsule has them.
var states = []capsules.Status{
	capsules.StatusCreating, capsules.StatusRunning, capsules.StatusPausing, capsules.StatusPaused, capsules.StatusResuming,
}

// Collectors returns the decorator's series and the collector of capsules and host capacity
// (dataDir: the filesystem whose size is reported).
func Collectors(a *Agent, dataDir string) []prometheus.Collector {
	return []prometheus.Collector{a.duration, a.errors, newCollector(a, dataDir)}
}

type collector struct {
	agent   *Agent
	dataDir string

	capsules, capCPU, capMem, capDisk, diskAvail, resCPU, resMem, resDisk *prometheus.Desc

	poolSize, poolReady, poolMem, poolHits, poolMisses, poolRefill *prometheus.Desc
}

func newCollector(a *Agent, dataDir string) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &collector{
		agent:     a,
		dataDir:   dataDir,
		capsules:  d("capsules", "Capsules on this host by state.", "state"),
		capCPU:    d("host_capacity_cpus", "CPU cores of this machine."),
		capMem:    d("host_capacity_memory_bytes", "Memory of this machine (MemTotal)."),
		capDisk:   d("host_capacity_disk_bytes", "Size of the filesystem of the data directory."),
		diskAvail: d("host_disk_available_bytes", "Free space of the filesystem of the data directory."),
		resCPU:    d("reserved_cpus", "vCPUs of the capsules that are not paused."),
		resMem:    d("reserved_memory_bytes", "Memory limits of the capsules that are not paused."),
		resDisk:   d("reserved_disk_bytes", "Disk limits of every capsule (paused ones keep their disk)."),

		poolSize:   d("pool_size", "Configured size of a template's warm pool.", "team", "template"),
		poolReady:  d("pool_ready", "Warm pool capsules ready to hand out.", "team", "template"),
		poolMem:    d("pool_reserved_memory_bytes", "Memory limits of a template's ready warm pool capsules.", "team", "template"),
		poolHits:   d("pool_hits_total", "Creates served from a template's warm pool.", "team", "template"),
		poolMisses: d("pool_misses_total", "Creates for a pooled template that found no ready capsule of their shape.", "team", "template"),
		poolRefill: d("pool_refill_seconds", "Time to boot or restore one warm pool capsule.", "team", "template"),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.capsules, c.capCPU, c.capMem, c.capDisk, c.diskAvail, c.resCPU, c.resMem, c.resDisk,
		c.poolSize, c.poolReady, c.poolMem, c.poolHits, c.poolMisses, c.poolRefill} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	const mib = 1 << 20
	infos, err := c.agent.Capsules(context.Background())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.capsules, err)
	} else {
		counts := map[capsules.Status]int{}
		for _, s := range states {
			counts[s] = 0
		}
		var cpus, mem, disk float64
		for _, in := range infos {
			counts[in.Status]++
			disk += float64(in.DiskMB) * mib
			if in.Status != capsules.StatusPaused {
				cpus += float64(in.VCPUs)
				mem += float64(in.MemoryMB) * mib
			}
		}
		for s, n := range counts {
			gauge(c.capsules, float64(n), string(s))
		}
		gauge(c.resCPU, cpus)
		gauge(c.resMem, mem)
		gauge(c.resDisk, disk)
	}

	for _, p := range c.agent.Pools() {
		gauge(c.poolSize, float64(p.Size), p.TeamID, p.TemplateID)
		gauge(c.poolReady, float64(p.Ready), p.TeamID, p.TemplateID)
		gauge(c.poolMem, float64(p.MemoryMB)*mib, p.TeamID, p.TemplateID)
		ch <- prometheus.MustNewConstMetric(c.poolHits, prometheus.CounterValue, float64(p.Hits), p.TeamID, p.TemplateID)
		ch <- prometheus.MustNewConstMetric(c.poolMisses, prometheus.CounterValue, float64(p.Misses), p.TeamID, p.TemplateID)
		ch <- prometheus.MustNewConstSummary(c.poolRefill, p.Refills, p.RefillSeconds, nil, p.TeamID, p.TemplateID)
	}

	gauge(c.capCPU, float64(runtime.NumCPU()))
	if m, err := memTotal(); err == nil {
		gauge(c.capMem, float64(m))
	} else {
		ch <- prometheus.NewInvalidMetric(c.capMem, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(c.dataDir, &st); err == nil {
		gauge(c.capDisk, float64(st.Blocks)*float64(st.Bsize))
		gauge(c.diskAvail, float64(st.Bavail)*float64(st.Bsize))
	} else {
		ch <- prometheus.NewInvalidMetric(c.capDisk, err)
	}
}

// memTotal returns MemTotal of /proc/meminfo in bytes.
func memTotal() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no MemTotal in /proc/meminfo")
}
