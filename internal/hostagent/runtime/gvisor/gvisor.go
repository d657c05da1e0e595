// Package gvisor is the gVisor backend of runtime.Runtime: every capsule is
// one runsc sandbox running envd as its only process, with the capsule's
// image as a copy-on-write root (writes go to a gVisor overlay whose
// contents are part of every checkpoint), gVisor's own network stack inside
// the capsule's network namespace, and its limits applied through cgroups.
// Pause is a runsc checkpoint, Restore a runsc restore from one; both move
// the capsule's memory with O_DIRECT unless Config.BufferedCheckpoints.
//
// Host layout: runsc keeps container state in Config.StateDir; each capsule
// has Config.CapsulesDir/<id> holding its OCI bundle, console.log (runsc's
// and envd's output; console.log.1 keeps the last MiB of earlier runs) and,
// unlinked, the overlay filestore.
//
// Flatten (runtime.Flattener) writes a running capsule's root filesystem as
// a new image: the image copied, with `runsc tar rootfs-upper` applied.
package gvisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

const (
	bundleDir  = "bundle"
	consoleLog = "console.log"

	defaultCgroupParent = "/wrenn"
	defaultPidsLimit    = 16384

	// cleanupTimeout bounds the clean-up after a failed start, which runs
	// even when the caller's context has ended.
	cleanupTimeout = 30 * time.Second
)

// Config configures a Runtime.
type Config struct {
	Runsc       string // path of the runsc binary
	StateDir    string // runsc --root: state of all capsules' containers
	CapsulesDir string // per-capsule directories: bundle, overlay filestore, logs
	Log         *slog.Logger
	// Debug makes runsc write debug logs to CapsulesDir/<id>/debug/.
	Debug bool
	// CgroupParent is the cgroup capsules are created under, one child per
	// capsule id; default /wrenn.
	CgroupParent string
	// PidsLimit bounds the host tasks of one capsule (gVisor's threads and
	// its systrap stub processes); default 16384.
	PidsLimit int64
	// Nameservers are the DNS servers written to every capsule's
	// /etc/resolv.conf (none: the file says so).
	Nameservers []string
	// BufferedCheckpoints makes checkpoints write, and restores read, a
	// capsule's memory through the page cache. By default both pass -direct
	// (O_DIRECT on the checkpoint's pages file), which docs/benchmarks.md
	// ("Where create and restore time goes") measured faster; snapshot
	// directories on a filesystem that refuses O_DIRECT need this.
	BufferedCheckpoints bool
}

// Runtime runs capsules with runsc. It keeps no state of its own beyond
// per-id locks: everything it knows comes from runsc's state directory and
// the capsule directories, so a new Runtime picks up capsules a previous
// agent process started.
type Runtime struct {
	cfg   Config
	log   *slog.Logger
	locks idLocks
	// sandboxes caches each capsule's sandbox PID and the files Stats reads (id → *sandboxFiles),
	// so that Stats, called every sampling interval, reads the cgroup directly instead of running
	// `runsc list`. An entry is trusted only while that PID is still a runsc sandbox of the id;
	// Pause and Destroy drop it.
	sandboxes sync.Map
}

var (
	_ runtime.Runtime      = (*Runtime)(nil)
	_ runtime.Checkpointer = (*Runtime)(nil)
)

// New checks cfg, creates its directories and returns a Runtime.
func New(cfg Config) (*Runtime, error) {
	if cfg.Runsc == "" {
		return nil, errors.New("gvisor: no runsc binary configured")
	}
	bin, err := exec.LookPath(cfg.Runsc)
	if err != nil {
		return nil, fmt.Errorf("gvisor: runsc: %w", err)
	}
	if cfg.Runsc, err = filepath.Abs(bin); err != nil {
		return nil, fmt.Errorf("gvisor: runsc: %w", err)
	}
	for name, dir := range map[string]*string{"StateDir": &cfg.StateDir, "CapsulesDir": &cfg.CapsulesDir} {
		if *dir == "" {
			return nil, fmt.Errorf("gvisor: %s is not set", name)
		}
		if *dir, err = filepath.Abs(*dir); err != nil {
			return nil, fmt.Errorf("gvisor: %s: %w", name, err)
		}
		if err := os.MkdirAll(*dir, 0o700); err != nil {
			return nil, fmt.Errorf("gvisor: %w", err)
		}
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = defaultCgroupParent
	}
	if !filepath.IsAbs(cfg.CgroupParent) {
		return nil, fmt.Errorf("gvisor: CgroupParent %q is not absolute", cfg.CgroupParent)
	}
	if cfg.PidsLimit <= 0 {
		cfg.PidsLimit = defaultPidsLimit
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Runtime{cfg: cfg, log: cfg.Log.With("runtime", "gvisor")}, nil
}

func (r *Runtime) capsuleDir(id string) string { return filepath.Join(r.cfg.CapsulesDir, id) }

// Create writes the capsule's bundle and starts it with `runsc run -detach`.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) error {
	if err := checkSpec(spec); err != nil {
		return err
	}
	unlock, err := r.locks.lock(ctx, spec.ID)
	if err != nil {
		return err
	}
	defer unlock()

	start := time.Now()
	// The directory exists for every container of ours and outlives a
	// pause, so it marks running and paused capsules alike (no runsc call
	// needed to find out).
	if err := os.Mkdir(r.capsuleDir(spec.ID), 0o700); errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create capsule %s: %w", spec.ID, runtime.ErrExists)
	} else if err != nil {
		return fmt.Errorf("create capsule %s: %w", spec.ID, err)
	}
	bundle, err := r.prepare(spec)
	if err == nil {
		err = r.runscDetached(ctx, spec.ID, spec.DiskMB, "run", "-detach", "--bundle", bundle, spec.ID)
	}
	if err != nil {
		r.cleanupFailed(ctx, spec.ID, true)
		return fmt.Errorf("create capsule %s: %w", spec.ID, err)
	}
	r.log.InfoContext(ctx, "capsule created", "capsule_id", spec.ID, "took", time.Since(start))
	return nil
}

// Restore starts a capsule from snap with `runsc restore -detach` (and
// -direct unless Config.BufferedCheckpoints), after putting the capsule's
// address back into its namespace. Every way the agent starts a capsule
// from a snapshot (resume, a template's or a warm pool's capsule, a fork's
// copies) comes through here.
func (r *Runtime) Restore(ctx context.Context, spec runtime.Spec, snap runtime.Snapshot) error {
	if err := checkSpec(spec); err != nil {
		return err
	}
	if err := checkSnapshotDir(snap); err != nil {
		return fmt.Errorf("restore capsule %s: %w", spec.ID, err)
	}
	unlock, err := r.locks.lock(ctx, spec.ID)
	if err != nil {
		return err
	}
	defer unlock()

	start := time.Now()
	// Without a directory there is no container of ours under this id (a
	// template's new capsule): no need to ask runsc.
	var c container
	ok := false
	if _, err := os.Stat(r.capsuleDir(spec.ID)); err == nil {
		if c, ok, err = r.lookup(ctx, spec.ID); err != nil {
			return fmt.Errorf("restore capsule %s: %w", spec.ID, err)
		}
	}
	if ok && c.alive() {
		return fmt.Errorf("restore capsule %s: %w", spec.ID, runtime.ErrExists)
	}
	if ok {
		// A stopped container is what an interrupted pause leaves behind;
		// its sandbox is gone and the name is free to reuse.
		if _, err := r.runsc(ctx, spec.ID, "delete", "-force", spec.ID); err != nil {
			return fmt.Errorf("restore capsule %s: remove stopped container: %w", spec.ID, err)
		}
	}
	// A paused capsule keeps its directory; a template's new capsule has none.
	created := true
	if err := os.Mkdir(r.capsuleDir(spec.ID), 0o700); errors.Is(err, fs.ErrExist) {
		created = false
	} else if err != nil {
		return fmt.Errorf("restore capsule %s: %w", spec.ID, err)
	}
	bundle, err := r.prepare(spec)
	if err == nil {
		err = r.runscDetached(ctx, spec.ID, spec.DiskMB, r.restoreArgs(snap.Dir, bundle, spec.ID)...)
	}
	if err != nil {
		r.cleanupFailed(ctx, spec.ID, created)
		return fmt.Errorf("restore capsule %s: %w", spec.ID, err)
	}
	r.log.InfoContext(ctx, "capsule restored", "capsule_id", spec.ID, "snapshot", snap.Dir, "took", time.Since(start))
	return nil
}

// restoreArgs are the arguments of `runsc restore` of capsule id from the
// checkpoint in dir with the bundle in bundle.
func (r *Runtime) restoreArgs(dir, bundle, id string) []string {
	args := []string{"restore", "-detach"}
	if !r.cfg.BufferedCheckpoints {
		// O_DIRECT reads of the pages file, which runsc writes (page
		// aligned) because checkpoints are uncompressed: no copy through
		// the page cache.
		args = append(args, "-direct")
	}
	return append(args, "-image-path", dir, "--bundle", bundle, id)
}

// checkpointArgs are the arguments of `runsc checkpoint` of capsule id into
// dir, with flags.
func (r *Runtime) checkpointArgs(dir, id string, flags ...string) []string {
	args := append([]string{"checkpoint"}, flags...)
	if !r.cfg.BufferedCheckpoints {
		// O_DIRECT writes of the pages file: the capsule's memory goes to
		// disk without filling the page cache with dirty pages. Never
		// -compression: a compressed checkpoint has no pages file, and
		// neither -direct applies to it.
		args = append(args, "-direct")
	}
	return append(args, "-image-path", dir, id)
}

// prepare readies the host for starting spec: the capsule's address in its
// namespace, the image's mount points and the OCI bundle, whose directory
// it returns.
func (r *Runtime) prepare(spec runtime.Spec) (string, error) {
	if err := ensureAddress(spec.Network); err != nil {
		return "", err
	}
	if err := PrepareImage(spec.Image.Path); err != nil {
		return "", err
	}
	bundle := filepath.Join(r.capsuleDir(spec.ID), bundleDir)
	cgroup := filepath.Join(r.cfg.CgroupParent, spec.ID)
	// Rewritten on every start and restore: a restored capsule gets this host's DNS servers.
	resolv := filepath.Join(r.capsuleDir(spec.ID), "resolv.conf")
	if err := os.WriteFile(resolv, resolvConfFile(r.cfg.Nameservers), 0o644); err != nil {
		return "", fmt.Errorf("write resolv.conf: %w", err)
	}
	if err := writeBundle(bundle, ociSpec(spec, cgroup, r.cfg.PidsLimit, resolv)); err != nil {
		return "", fmt.Errorf("write bundle: %w", err)
	}
	return bundle, nil
}

// cleanupFailed removes what a failed Create or Restore left: the container
// and, when the call created it, the capsule directory.
func (r *Runtime) cleanupFailed(ctx context.Context, id string, removeDir bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, ok, err := r.lookup(ctx, id); err == nil && ok {
		if _, err := r.runsc(ctx, id, "delete", "-force", id); err != nil {
			r.log.WarnContext(ctx, "clean up failed capsule", "capsule_id", id, "error", err)
		}
	}
	if removeDir {
		if err := os.RemoveAll(r.capsuleDir(id)); err != nil {
			r.log.WarnContext(ctx, "clean up failed capsule", "capsule_id", id, "error", err)
		}
	}
}

// Pause checkpoints the capsule into snap.Dir (the sandbox exits) and
// deletes the container. The capsule directory stays for Restore.
func (r *Runtime) Pause(ctx context.Context, id string, snap runtime.Snapshot) error {
	start := time.Now()
	err := r.checkpoint(ctx, "pause", id, snap, func() error {
		if _, err := r.runsc(ctx, id, "delete", "-force", id); err != nil {
			return fmt.Errorf("pause capsule %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.log.InfoContext(ctx, "capsule paused", "capsule_id", id, "snapshot", snap.Dir, "took", time.Since(start))
	return nil
}

// Checkpoint saves the running capsule into snap.Dir with `runsc
// checkpoint -leave-running`: the sandbox stops for the save and carries on
// (runsc restores it in place, under a new sandbox process).
func (r *Runtime) Checkpoint(ctx context.Context, id string, snap runtime.Snapshot) error {
	start := time.Now()
	if err := r.checkpoint(ctx, "checkpoint", id, snap, nil, "-leave-running"); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "capsule checkpointed", "capsule_id", id, "snapshot", snap.Dir, "took", time.Since(start))
	return nil
}

// checkpoint runs `runsc checkpoint` of capsule id into snap.Dir with flags,
// under the capsule's lock, then after (when set) still under the lock. op
// names the operation in errors.
func (r *Runtime) checkpoint(ctx context.Context, op, id string, snap runtime.Snapshot, after func() error, flags ...string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if err := checkSnapshotDir(snap); err != nil {
		return fmt.Errorf("%s capsule %s: %w", op, id, err)
	}
	unlock, err := r.locks.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(r.capsuleDir(id)); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s capsule %s: %w", op, id, runtime.ErrNotFound)
	}
	r.sandboxes.Delete(id)
	if _, err := r.runsc(ctx, id, r.checkpointArgs(snap.Dir, id, flags...)...); err != nil {
		// Only now ask runsc what the container is (the common path
		// saves that call): gone, or not running.
		if c, ok, lerr := r.lookup(ctx, id); lerr == nil && !ok {
			return fmt.Errorf("%s capsule %s: %w", op, id, runtime.ErrNotFound)
		} else if lerr == nil && !c.alive() {
			return fmt.Errorf("%s capsule %s: container is %s: %w", op, id, c.Status, runtime.ErrState)
		}
		return fmt.Errorf("%s capsule %s: %w", op, id, err)
	}
	if after != nil {
		return after()
	}
	return nil
}

// Destroy kills the capsule's sandbox, deletes its container and removes
// its directory. A capsule that does not exist is not an error.
func (r *Runtime) Destroy(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	unlock, err := r.locks.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()

	r.sandboxes.Delete(id)
	_, derr := r.runsc(ctx, id, "delete", "-force", id)
	ok := derr == nil
	if derr != nil {
		// Failing is fine when there is no such container (paused or
		// already gone); ask runsc only in that case.
		_, exists, err := r.lookup(ctx, id)
		if err != nil {
			return fmt.Errorf("destroy capsule %s: %w", id, err)
		}
		if exists {
			return fmt.Errorf("destroy capsule %s: %w", id, derr)
		}
	}
	r.killStrays(id)
	if err := os.RemoveAll(r.capsuleDir(id)); err != nil {
		return fmt.Errorf("destroy capsule %s: %w", id, err)
	}
	r.log.InfoContext(ctx, "capsule destroyed", "capsule_id", id, "existed", ok)
	return nil
}

// Stats reads the capsule's CPU time and memory charge from its cgroup and
// the disk space of its overlay filestore.
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	if err := checkID(id); err != nil {
		return runtime.Stats{}, err
	}
	unlock, err := r.locks.lock(ctx, id)
	if err != nil {
		return runtime.Stats{}, err
	}
	defer unlock()

	f, ok := r.cachedSandbox(id)
	if !ok {
		c, found, err := r.lookup(ctx, id)
		switch {
		case err != nil:
			return runtime.Stats{}, fmt.Errorf("stats of capsule %s: %w", id, err)
		case !found:
			return runtime.Stats{}, fmt.Errorf("stats of capsule %s: %w", id, runtime.ErrNotFound)
		case !c.alive():
			return runtime.Stats{}, fmt.Errorf("stats of capsule %s: container is %s: %w", id, c.Status, runtime.ErrState)
		}
		if f, err = newSandboxFiles(c.PID); err != nil {
			return runtime.Stats{}, fmt.Errorf("stats of capsule %s: %w", id, err)
		}
		r.sandboxes.Store(id, f)
	}
	cpu, mem, err := f.usage()
	if err != nil {
		r.sandboxes.Delete(id)
		return runtime.Stats{}, fmt.Errorf("stats of capsule %s: %w", id, err)
	}
	return runtime.Stats{
		CPUNanos:  cpu,
		MemBytes:  mem,
		DiskBytes: f.diskBytes(r.capsuleDir(id)),
		At:        time.Now(),
	}, nil
}

// cachedSandbox returns the cached sandbox files of id while their process is still the runsc
// sandbox of id (its command line ends with the container id), so a recycled PID is never read.
// Stats holds id's lock, so one entry is never used by two calls at once.
func (r *Runtime) cachedSandbox(id string) (*sandboxFiles, bool) {
	v, ok := r.sandboxes.Load(id)
	if !ok {
		return nil, false
	}
	f := v.(*sandboxFiles)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", f.pid))
	if err != nil || !bytes.HasSuffix(bytes.TrimRight(b, "\x00"), []byte(" "+id)) && !bytes.HasSuffix(bytes.TrimRight(b, "\x00"), []byte("\x00"+id)) {
		r.sandboxes.Delete(id)
		return nil, false
	}
	return f, true
}

// List returns the ids of the containers in the state directory whose
// sandbox exists, sorted.
func (r *Runtime) List(ctx context.Context) ([]string, error) {
	cs, err := r.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("list capsules: %w", err)
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		if c.alive() {
			ids = append(ids, c.ID)
		}
	}
	// Sandboxes of a `runsc run` cut short have no container to list, but
	// they are ours and running: report them so they get destroyed.
	for id := range r.strays() {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func checkSnapshotDir(snap runtime.Snapshot) error {
	if !filepath.IsAbs(snap.Dir) {
		return fmt.Errorf("snapshot directory %q is not absolute", snap.Dir)
	}
	st, err := os.Stat(snap.Dir)
	if err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("snapshot directory %s is not a directory", snap.Dir)
	}
	return nil
}
