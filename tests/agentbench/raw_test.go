package agentbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/runtime/gvisor"
	"github.com/wrenn/wrenn/internal/testutil"
)

// rawHost runs capsules with runsc directly: the same image, envd, flags,
// OCI configuration and limits as the agent's gVisor runtime, in network
// namespaces made before the timed part, with none of the agent's
// bookkeeping.
type rawHost struct {
	b      *testing.B
	s      setup
	state  string // runsc --root
	dir    string // per-capsule directories
	cgroup string
	health *http.Client

	mu  sync.Mutex
	seq int
	// ids are the capsule directories that exist, each with whether its
	// container does, for clean-up.
	ids map[string]bool
}

// rawCapsule is one raw container and the namespace it runs in.
type rawCapsule struct {
	id  string
	ns  testutil.Netns
	mem int
}

func (c rawCapsule) addr() string { return net.JoinHostPort(c.ns.InsideIP, "49983") }

func newRawHost(b *testing.B, s setup) *rawHost {
	b.Helper()
	root := b.TempDir()
	h := &rawHost{
		b: b, s: s,
		state:  filepath.Join(root, "state"),
		dir:    filepath.Join(root, "capsules"),
		cgroup: "/" + testutil.RandomName("wbraw", 4),
		ids:    map[string]bool{},
		// A fresh connection per probe: a pooled one to an earlier capsule
		// on the same address would answer for a dead sandbox.
		health: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	for _, d := range []string{h.state, h.dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		h.cleanup()
		removeCgroup(b, h.cgroup)
	})
	return h
}

// cleanup removes every container and capsule directory left.
func (h *rawHost) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	h.mu.Lock()
	ids := slices.Collect(maps.Keys(h.ids))
	h.mu.Unlock()
	for _, id := range ids {
		if err := h.delete(ctx, id); err != nil {
			h.b.Errorf("clean up raw capsule %s: %v", id, err)
		}
	}
}

// netns makes a namespace for raw capsules (not timed by callers: the raw
// baseline starts in a pre-made namespace). The namespace is removed when
// b ends, after every container still running.
func (h *rawHost) netns(b *testing.B) testutil.Netns {
	ns := testutil.NewNetns(b)
	b.Cleanup(h.cleanup)
	return ns
}

// capsule names a new container that runs in ns.
func (h *rawHost) capsule(ns testutil.Netns, mem int) rawCapsule {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	return rawCapsule{id: fmt.Sprintf("rw-%s-%d", testutil.RandomName("", 8), h.seq), ns: ns, mem: mem}
}

// flags are the runsc global flags of the agent's gVisor runtime.
func (h *rawHost) flags(id string) []string {
	return []string{
		"--root", h.state,
		"--platform=systrap",
		"--network=sandbox",
		"--gofer-network-namespace=new",
		fmt.Sprintf("--overlay2=root:dir=%s,size=%dm", filepath.Join(h.dir, id), diskMB),
	}
}

// spec is the OCI configuration the agent's runtime writes for a capsule
// (envd as init, copy-on-write root, envd and metadata bind-mounted
// read-only, the same limits), minus nothing that costs time to set up.
func (h *rawHost) spec(c rawCapsule, meta string) *specs.Spec {
	mem := int64(c.mem) << 20
	quota := int64(100_000)
	period := uint64(100_000)
	pids := int64(16384)
	caps := []string{
		"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
		"CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SYS_NICE", "CAP_SYS_PTRACE",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args:         []string{gvisor.EnvdPath, "-metadata-file", gvisor.MetadataFile},
			Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:          "/",
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}},
		},
		Root:     &specs.Root{Path: h.s.image.Path},
		Hostname: c.id,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: gvisor.EnvdPath, Type: "bind", Source: h.s.envd, Options: []string{"rbind", "ro"}},
			{Destination: gvisor.MetadataMount, Type: "bind", Source: meta, Options: []string{"rbind", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/" + c.ns.Name},
			},
			CgroupsPath: filepath.Join(h.cgroup, c.id),
			Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &mem},
				CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
				Pids:   &specs.LinuxPids{Limit: &pids},
			},
		},
	}
}

// bundle writes c's directory, metadata and OCI bundle and returns the
// bundle directory.
func (h *rawHost) bundle(c rawCapsule) (string, error) {
	dir := filepath.Join(h.dir, c.id)
	meta := filepath.Join(dir, "meta")
	bundle := filepath.Join(dir, "bundle")
	for _, d := range []string{meta, bundle} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	md, err := json.Marshal(map[string]string{"sandbox_id": c.id, "template_id": imageName})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(meta, "metadata.json"), md, 0o644); err != nil {
		return "", err
	}
	return bundle, writeSpec(bundle, h.spec(c, meta))
}

// writeSpec writes the OCI configuration of a bundle.
func writeSpec(bundle string, spec *specs.Spec) error {
	cfg, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600)
}

// runsc runs a runsc command that exits on its own.
func (h *rawHost) runsc(ctx context.Context, id string, args ...string) error {
	cmd := exec.CommandContext(ctx, h.s.runsc, append(h.flags(id), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runsc %s: %w: %s", args[0], err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// detached runs `runsc run|restore -detach`, whose sandbox inherits the
// standard streams: they go to a log file, never a pipe.
func (h *rawHost) detached(ctx context.Context, id string, args ...string) error {
	logPath := filepath.Join(h.dir, id, "console.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	h.mu.Lock()
	h.ids[id] = true
	h.mu.Unlock()
	cmd := exec.CommandContext(ctx, h.s.runsc, append(h.flags(id), args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(logPath)
		if len(b) > 2048 {
			b = b[len(b)-2048:]
		}
		return fmt.Errorf("runsc %s: %w: %s", args[0], err, bytes.TrimSpace(b))
	}
	return nil
}

// run boots c: its address on its interface (runsc takes it into the
// sandbox, so a reused namespace needs it back), bundle, `runsc run
// -detach`, then polls envd's /health.
func (h *rawHost) run(ctx context.Context, c rawCapsule) error {
	if err := readdress(c.ns); err != nil {
		return err
	}
	bundle, err := h.bundle(c)
	if err != nil {
		return err
	}
	if err := h.detached(ctx, c.id, "run", "-detach", "--bundle", bundle, c.id); err != nil {
		return err
	}
	if err := h.waitHealthy(ctx, c); err != nil {
		return err
	}
	return h.envdPost(ctx, c, "/init")
}

// envdPost does a step of the capsule protocol by hand: POST /init after a
// boot or restore, POST /snapshot/prepare before a checkpoint — the same
// calls the agent makes, so both sides do the same operation.
func (h *rawHost) envdPost(ctx context.Context, c rawCapsule, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.addr()+path, nil)
	if err != nil {
		return err
	}
	res, err := h.health.Do(req)
	if err != nil {
		return err
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		return fmt.Errorf("POST %s: status %d", path, res.StatusCode)
	}
	return nil
}

// checkpoint saves c into dir and deletes the container, as a pause does.
func (h *rawHost) checkpoint(ctx context.Context, c rawCapsule, dir string) error {
	if err := h.envdPost(ctx, c, "/snapshot/prepare"); err != nil {
		return err
	}
	if err := h.runsc(ctx, c.id, "checkpoint", "-image-path", dir, c.id); err != nil {
		return err
	}
	if err := h.runsc(ctx, c.id, "delete", "-force", c.id); err != nil {
		return err
	}
	h.mu.Lock()
	h.ids[c.id] = false
	h.mu.Unlock()
	return nil
}

// restore puts c's address back into its namespace (runsc took it into
// the sandbox's netstack), writes its bundle when it has none, restores the
// checkpoint in dir and polls envd's /health.
func (h *rawHost) restore(ctx context.Context, c rawCapsule, dir string) error {
	if err := readdress(c.ns); err != nil {
		return err
	}
	bundle := filepath.Join(h.dir, c.id, "bundle")
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		if bundle, err = h.bundle(c); err != nil {
			return err
		}
	}
	if err := h.detached(ctx, c.id, "restore", "-detach", "-image-path", dir, "--bundle", bundle, c.id); err != nil {
		return err
	}
	if err := h.waitHealthy(ctx, c); err != nil {
		return err
	}
	return h.envdPost(ctx, c, "/init")
}

// destroy deletes c's container and directory.
func (h *rawHost) destroy(ctx context.Context, c rawCapsule) error {
	return h.delete(ctx, c.id)
}

func (h *rawHost) delete(ctx context.Context, id string) error {
	h.mu.Lock()
	exists := h.ids[id]
	h.mu.Unlock()
	if exists {
		if err := h.runsc(ctx, id, "delete", "-force", id); err != nil {
			return err
		}
	}
	h.mu.Lock()
	delete(h.ids, id)
	h.mu.Unlock()
	return os.RemoveAll(filepath.Join(h.dir, id))
}

// waitHealthy polls envd's /health every 10 ms until it answers 200.
func (h *rawHost) waitHealthy(ctx context.Context, c rawCapsule) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	url := "http://" + c.addr() + "/health"
	for {
		attempt, stop := context.WithTimeout(ctx, 250*time.Millisecond)
		req, _ := http.NewRequestWithContext(attempt, http.MethodGet, url, nil)
		res, err := h.health.Do(req)
		stop()
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envd at %s not healthy: %w (last: %v)", url, ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// readdress adds the inside address of ns back to its interface.
func readdress(n testutil.Netns) error {
	ns, err := netns.GetFromName(n.Name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", n.Name, err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer nh.Close()
	link, err := nh.LinkByName(n.InsideVeth)
	if err != nil {
		return err
	}
	addr, err := netlink.ParseAddr(n.InsideIP + "/30")
	if err != nil {
		return err
	}
	if err := nh.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s: %w", addr, err)
	}
	return nil
}
