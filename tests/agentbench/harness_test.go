// Package agentbench measures the host agent's capsule operations against
// raw runsc doing the same operation on the same image in the same run:
// the difference is what the agent adds (network setup, records, envd
// /init, its health polling). Every benchmark needs root, runsc and
// busybox-static, and removes everything it creates.
package agentbench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/wrenn/wrenn/internal/hostagent/capsules"
	"github.com/wrenn/wrenn/internal/hostagent/images"
	"github.com/wrenn/wrenn/internal/hostagent/network"
	"github.com/wrenn/wrenn/internal/hostagent/runtime"
	"github.com/wrenn/wrenn/internal/hostagent/runtime/gvisor"
	"github.com/wrenn/wrenn/internal/testutil"
	"github.com/wrenn/wrenn/internal/testutil/rawrunsc"
)

// Benchmark parameters. Pause/resume capsules get more memory so that 256
// MiB of dirty tmpfs pages fit under their cgroup limit.
const (
	imageName      = "minimal"
	memoryMB       = 256
	dirtyMemoryMB  = 512
	diskMB         = 2048 // the agent's default disk
	benchTimeout   = 10 * time.Minute
	idleCapsules   = 5
	parallelCalls  = 4
	settleIdleTime = 3 * time.Second
)

func TestMain(m *testing.M) { testutil.Main(m) }

// minimalImage builds the minimal image into a store under the
// benchmark's temporary directory; the agent and raw runsc both boot it.
func minimalImage(b *testing.B) (*images.Store, runtime.Image) {
	b.Helper()
	store := &images.Store{Dir: b.TempDir(), Log: quietLog()}
	b.Cleanup(func() {
		if err := store.Close(); err != nil {
			b.Errorf("image store: %v", err)
		}
	})
	img, err := store.Ensure(ctxFor(b), imageName)
	if err != nil {
		b.Fatalf("image %s: %v", imageName, err)
	}
	if err := gvisor.PrepareImage(img.Path); err != nil {
		b.Fatal(err)
	}
	return store, img
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// envdBinary is $WRENN_ENVD_BIN (make bench sets the release build) or a
// fresh build of cmd/envd.
func envdBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv(testutil.EnvdBinEnv); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			b.Fatal(err)
		}
		return abs
	}
	return testutil.BuildBinary(b, testutil.EnvdPackage)
}

// setup is what every benchmark needs: root, the image, envd and runsc.
type setup struct {
	images *images.Store
	image  runtime.Image
	envd   string
	runsc  string
}

func newSetup(b *testing.B) setup {
	b.Helper()
	testutil.RequireRoot(b)
	store, img := minimalImage(b)
	return setup{images: store, image: img, envd: envdBinary(b), runsc: testutil.Runsc(b)}
}

// ctxFor returns a context bounded by benchTimeout, cancelled with b.
func ctxFor(b *testing.B) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	b.Cleanup(cancel)
	return ctx
}

// freeSubnet picks a /22 in 10.160.0.0–10.199.252.0 that no host address
// is in, for one benchmark's capsule networks: 256 capsules of a /30 each,
// enough for the density benchmark's 200.
func freeSubnet(b *testing.B) netip.Prefix {
	b.Helper()
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		b.Fatal(err)
	}
next:
	for range 64 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(160 + rand.IntN(40)), byte(rand.IntN(64) * 4), 0}), 22)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && p.Contains(ip.Unmap()) {
				continue next
			}
		}
		return p
	}
	b.Fatal("no free /22 for capsule networks")
	return netip.Prefix{}
}

// agentHost is an agent over its own data directory, network prefix,
// subnet and cgroup parent. When the benchmark ends every capsule is
// destroyed and the network, cgroups and files are removed.
type agentHost struct {
	*capsules.Agent
	Cgroup string // cgroup parent of its capsules
	seq    int
	mu     sync.Mutex
}

// newAgentHost starts an agent; opts adjust its configuration.
func newAgentHost(b *testing.B, s setup, opts ...func(*capsules.Config)) *agentHost {
	b.Helper()
	ctx := ctxFor(b)
	prefix := testutil.RandomName("wb", 4)
	dataDir := b.TempDir()
	nets, err := network.New(ctx, network.Config{Prefix: prefix, Subnet: freeSubnet(b), Log: quietLog()})
	if err != nil {
		b.Fatalf("network: %v", err)
	}
	h := &agentHost{Cgroup: "/" + prefix + "-agent"}
	b.Cleanup(func() {
		if err := nets.Close(context.Background()); err != nil {
			b.Errorf("network close: %v", err)
		}
		rawrunsc.RemoveCgroup(b, h.Cgroup)
	})
	rt, err := gvisor.New(gvisor.Config{
		Runsc:        s.runsc,
		StateDir:     filepath.Join(dataDir, "runsc"),
		CapsulesDir:  filepath.Join(dataDir, "runtime"),
		CgroupParent: h.Cgroup,
		Log:          quietLog(),
	})
	if err != nil {
		b.Fatalf("gvisor: %v", err)
	}
	cfg := capsules.Config{
		DataDir: dataDir,
		Runtime: rt,
		Network: nets,
		Images:  s.images,
		Envd:    s.envd,
		Log:     quietLog(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	ag, err := capsules.New(ctx, cfg)
	if err != nil {
		b.Fatalf("agent: %v", err)
	}
	h.Agent = ag
	b.Cleanup(func() {
		if err := ag.Terminate(context.Background()); err != nil {
			b.Errorf("terminate: %v", err)
		}
		ag.Close()
	})
	return h
}

// newID returns a fresh capsule id.
func (h *agentHost) newID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	return fmt.Sprintf("cl-%s-%d", testutil.RandomName("", 8), h.seq)
}

// create makes a running capsule from the minimal image.
func (h *agentHost) create(ctx context.Context, mem int) (capsules.Info, error) {
	return h.Create(ctx, capsules.CreateParams{ID: h.newID(), VCPUs: 1, MemoryMB: mem, TemplateID: imageName})
}

// mustCreate is create that fails the benchmark.
func (h *agentHost) mustCreate(b *testing.B, mem int) capsules.Info {
	b.Helper()
	info, err := h.create(ctxFor(b), mem)
	if err != nil {
		b.Fatalf("agent create: %v", err)
	}
	return info
}

// latencies collects per-operation durations for percentile metrics.
type latencies []time.Duration

func (l *latencies) time(f func()) {
	start := time.Now()
	f()
	*l = append(*l, time.Since(start))
}

// report adds the median as "ms/p50" to b's metrics.
func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	s := slices.Clone(l)
	slices.Sort(s)
	b.ReportMetric(float64(s[len(s)/2].Microseconds())/1000, "ms/p50")
}
