// Package rawrunsc runs capsules with runsc directly, for benchmarks that compare Wrenn with the runtime
// alone: the same image, envd, runsc flags, OCI configuration and limits as the agent's gVisor runtime
// (internal/hostagent/runtime/gvisor), in network namespaces made before the timed part, with none of
// the agent's bookkeeping. Everything a Host creates is removed when the test or benchmark ends.
package rawrunsc

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

// ReadyTimeout bounds the wait for envd's /health after a run or restore.
const ReadyTimeout = 30 * time.Second

// cleanupTimeout bounds the removal of what is left when the test ends.
const cleanupTimeout = 10 * time.Minute

// Config is what the raw capsules run: a prepared image root filesystem (gvisor.PrepareImage), the envd
// binary, the runsc binary and the agent's disk size.
type Config struct {
	Runsc     string
	Envd      string
	Image     string // root filesystem path
	ImageName string // the template id in the capsules' metadata
	DiskMB    int
}

// Host runs raw runsc capsules under its own runsc state, directories and cgroup parent.
type Host struct {
	t      testing.TB
	cfg    Config
	state  string // runsc --root
	dir    string // per-capsule directories
	Cgroup string // cgroup parent of the capsules
	health *http.Client

	mu  sync.Mutex
	seq int
	// ids are the capsule directories that exist, each with whether its
	// container does, for clean-up.
	ids map[string]bool
}

// Capsule is one raw container and the namespace it runs in.
type Capsule struct {
	ID       string
	NS       testutil.Netns
	MemoryMB int
}

// Addr is envd's address in c.
func (c Capsule) Addr() string { return net.JoinHostPort(c.NS.InsideIP, "49983") }

// New makes a Host; when t ends every container and directory left is removed, then its cgroup.
func New(t testing.TB, cfg Config) *Host {
	t.Helper()
	testutil.RequireRoot(t)
	root := t.TempDir()
	h := &Host{
		t: t, cfg: cfg,
		state:  filepath.Join(root, "state"),
		dir:    filepath.Join(root, "capsules"),
		Cgroup: "/" + testutil.RandomName("wbraw", 4),
		ids:    map[string]bool{},
		// A fresh connection per probe: a pooled one to an earlier capsule
		// on the same address would answer for a dead sandbox.
		health: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}
	for _, d := range []string{h.state, h.dir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		h.cleanup()
		RemoveCgroup(t, h.Cgroup)
	})
	return h
}

// RemoveCgroup removes the (by then empty) cgroup parent runsc created in every hierarchy.
func RemoveCgroup(t testing.TB, parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
}

// cleanup removes every container and capsule directory left.
func (h *Host) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	h.mu.Lock()
	ids := slices.Collect(maps.Keys(h.ids))
	h.mu.Unlock()
	for _, id := range ids {
		if err := h.delete(ctx, id); err != nil {
			h.t.Errorf("clean up raw capsule %s: %v", id, err)
		}
	}
}

// Netns makes a namespace for raw capsules (not timed by callers: the raw
// baseline starts in a pre-made namespace). The namespace is removed when
// t ends, after every container still running.
func (h *Host) Netns(t testing.TB) testutil.Netns {
	ns := testutil.NewNetns(t)
	t.Cleanup(h.cleanup)
	return ns
}

// Capsule names a new container that runs in ns with mem MiB.
func (h *Host) Capsule(ns testutil.Netns, mem int) Capsule {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	return Capsule{ID: fmt.Sprintf("rw-%s-%d", testutil.RandomName("", 8), h.seq), NS: ns, MemoryMB: mem}
}

// CapsuleDir is the directory of the capsule id (bundle, metadata, overlay, console log).
func (h *Host) CapsuleDir(id string) string { return filepath.Join(h.dir, id) }

// flags are the runsc global flags of the agent's gVisor runtime.
func (h *Host) flags(id string) []string {
	return []string{
		"--root", h.state,
		"--platform=systrap",
		"--network=sandbox",
		"--gofer-network-namespace=new",
		fmt.Sprintf("--overlay2=root:dir=%s,size=%dm", h.CapsuleDir(id), h.cfg.DiskMB),
	}
}

// Spec is the OCI configuration the agent's runtime writes for a capsule
// (envd as init, copy-on-write root, envd and metadata bind-mounted
// read-only, the same limits), minus nothing that costs time to set up.
func (h *Host) Spec(c Capsule, meta string) *specs.Spec {
	mem := int64(c.MemoryMB) << 20
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
		Root:     &specs.Root{Path: h.cfg.Image},
		Hostname: c.ID,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: gvisor.EnvdPath, Type: "bind", Source: h.cfg.Envd, Options: []string{"rbind", "ro"}},
			{Destination: gvisor.MetadataMount, Type: "bind", Source: meta, Options: []string{"rbind", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: "/var/run/netns/" + c.NS.Name},
			},
			CgroupsPath: filepath.Join(h.Cgroup, c.ID),
			Resources: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: &mem},
				CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
				Pids:   &specs.LinuxPids{Limit: &pids},
			},
		},
	}
}

// Bundle writes c's directory, metadata and OCI bundle and returns the
// bundle directory.
func (h *Host) Bundle(c Capsule) (string, error) {
	dir := h.CapsuleDir(c.ID)
	meta := filepath.Join(dir, "meta")
	bundle := filepath.Join(dir, "bundle")
	for _, d := range []string{meta, bundle} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", err
		}
	}
	md, err := json.Marshal(map[string]string{"sandbox_id": c.ID, "template_id": h.cfg.ImageName})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(meta, "metadata.json"), md, 0o644); err != nil {
		return "", err
	}
	return bundle, WriteSpec(bundle, h.Spec(c, meta))
}

// WriteSpec writes the OCI configuration of a bundle.
func WriteSpec(bundle string, spec *specs.Spec) error {
	cfg, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600)
}

// Runsc runs a runsc command that exits on its own.
func (h *Host) Runsc(ctx context.Context, id string, args ...string) error {
	cmd := exec.CommandContext(ctx, h.cfg.Runsc, append(h.flags(id), args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("runsc %s: %w: %s", args[0], err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// Detached runs `runsc run|restore -detach`, whose sandbox inherits the
// standard streams: they go to a log file, never a pipe.
func (h *Host) Detached(ctx context.Context, id string, args ...string) error {
	logPath := filepath.Join(h.CapsuleDir(id), "console.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	h.mu.Lock()
	h.ids[id] = true
	h.mu.Unlock()
	cmd := exec.CommandContext(ctx, h.cfg.Runsc, append(h.flags(id), args...)...)
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

// Run boots c: its address on its interface (runsc takes it into the
// sandbox, so a reused namespace needs it back), bundle, `runsc run
// -detach`, then polls envd's /health and sends /init.
func (h *Host) Run(ctx context.Context, c Capsule) error {
	if err := Readdress(c.NS); err != nil {
		return err
	}
	bundle, err := h.Bundle(c)
	if err != nil {
		return err
	}
	if err := h.Detached(ctx, c.ID, "run", "-detach", "--bundle", bundle, c.ID); err != nil {
		return err
	}
	if err := h.WaitHealthy(ctx, c); err != nil {
		return err
	}
	return h.EnvdPost(ctx, c, "/init")
}

// EnvdPost does a step of the capsule protocol by hand: POST /init after a
// boot or restore, POST /snapshot/prepare before a checkpoint — the same
// calls the agent makes, so both sides do the same operation.
func (h *Host) EnvdPost(ctx context.Context, c Capsule, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.Addr()+path, nil)
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

// Checkpoint saves c into dir and deletes the container, as a pause does.
// Like the agent by default, it writes the pages file with O_DIRECT
// (docs/benchmarks.md, "Where create and restore time goes").
func (h *Host) Checkpoint(ctx context.Context, c Capsule, dir string) error {
	if err := h.EnvdPost(ctx, c, "/snapshot/prepare"); err != nil {
		return err
	}
	if err := h.Runsc(ctx, c.ID, "checkpoint", "-direct", "-image-path", dir, c.ID); err != nil {
		return err
	}
	if err := h.Runsc(ctx, c.ID, "delete", "-force", c.ID); err != nil {
		return err
	}
	h.mu.Lock()
	h.ids[c.ID] = false
	h.mu.Unlock()
	return nil
}

// Restore puts c's address back into its namespace (runsc took it into
// the sandbox's netstack), writes its bundle when it has none, restores the
// checkpoint in dir (reading it with O_DIRECT, as the agent does by
// default), polls envd's /health and sends /init.
func (h *Host) Restore(ctx context.Context, c Capsule, dir string) error {
	if err := Readdress(c.NS); err != nil {
		return err
	}
	bundle := filepath.Join(h.CapsuleDir(c.ID), "bundle")
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		if bundle, err = h.Bundle(c); err != nil {
			return err
		}
	}
	if err := h.Detached(ctx, c.ID, "restore", "-detach", "-direct", "-image-path", dir, "--bundle", bundle, c.ID); err != nil {
		return err
	}
	if err := h.WaitHealthy(ctx, c); err != nil {
		return err
	}
	return h.EnvdPost(ctx, c, "/init")
}

// Destroy deletes c's container and directory.
func (h *Host) Destroy(ctx context.Context, c Capsule) error {
	return h.delete(ctx, c.ID)
}

func (h *Host) delete(ctx context.Context, id string) error {
	h.mu.Lock()
	exists := h.ids[id]
	h.mu.Unlock()
	if exists {
		if err := h.Runsc(ctx, id, "delete", "-force", id); err != nil {
			return err
		}
	}
	h.mu.Lock()
	delete(h.ids, id)
	h.mu.Unlock()
	return os.RemoveAll(h.CapsuleDir(id))
}

// WaitHealthy polls envd's /health every 10 ms until it answers 200.
func (h *Host) WaitHealthy(ctx context.Context, c Capsule) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	url := "http://" + c.Addr() + "/health"
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

// Readdress adds the inside address of n back to its interface.
func Readdress(n testutil.Netns) error {
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
