package gvisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// tarHeadroom is memory added to a capsule's limit while runsc archives its
// upper layer, on top of twice the layer's size (see streamUpper).
const tarHeadroom = 64 << 20

var _ runtime.Flattener = (*Runtime)(nil)

// Flatten writes the running capsule's root filesystem — its image with
// every change of gVisor's overlay upper layer applied — as a new image in
// dir, which must not exist (its parent must). It copies the image into
// dir+".tmp" (reflinks where the file system allows), streams the upper
// layer out of the sandbox with `runsc tar rootfs-upper` straight into
// applyUpper, prepares the result as PrepareImage does, syncs it and renames
// it to dir. A leftover dir+".tmp" of an interrupted Flatten is removed
// first. The capsule keeps running; only the streaming holds its lock, and
// raises its memory limit for the duration (see streamUpper).
//
// The layer is a consistent copy (gVisor holds the layer's lock while
// writing it), but data a program still holds in its own buffers is not in
// it: the caller has the capsule sync first.
//
// The returned Image.ID is the hex SHA-256 of the base image's ID, a zero
// byte and the upper-layer tar stream exactly as runsc wrote it. It names
// this flatten, not a canonical form of the tree: runsc writes a
// directory's entries in no fixed order, so flattening equal trees twice can
// give two IDs, never one ID for two different trees of the same base.
func (r *Runtime) Flatten(ctx context.Context, id, dir string) (runtime.Image, error) {
	if err := checkID(id); err != nil {
		return runtime.Image{}, err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return runtime.Image{}, fmt.Errorf("flatten capsule %s: %w", id, err)
	}
	if _, err := os.Lstat(dir); err == nil {
		return runtime.Image{}, fmt.Errorf("flatten capsule %s: %s: %w", id, dir, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return runtime.Image{}, fmt.Errorf("flatten capsule %s: %w", id, err)
	}
	start := time.Now()
	var base runtime.Image
	err = r.withRunning(ctx, id, func(container) error {
		var err error
		base, err = r.imageOf(id)
		return err
	})
	if err != nil {
		return runtime.Image{}, fmt.Errorf("flatten capsule %s: %w", id, err)
	}

	tmp := dir + ".tmp"
	img, times, err := r.buildFlat(ctx, id, base, tmp)
	if err == nil {
		err = renameNoReplace(tmp, dir)
	}
	if err != nil {
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			r.log.WarnContext(ctx, "remove unfinished image", "path", tmp, "error", rmErr)
		}
		return runtime.Image{}, fmt.Errorf("flatten capsule %s: %w", id, err)
	}
	img.Path = dir
	r.log.InfoContext(ctx, "capsule flattened", "capsule_id", id, "image", dir, "image_id", img.ID,
		"took", time.Since(start), "copy", times.copy, "layer", times.layer, "sync", times.sync)
	return img, nil
}

// withRunning calls fn with capsule id's container, holding the capsule's
// lock, if the capsule is running.
func (r *Runtime) withRunning(ctx context.Context, id string, fn func(container) error) error {
	unlock, err := r.locks.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	c, ok, err := r.lookup(ctx, id)
	switch {
	case err != nil:
		return err
	case !ok:
		return runtime.ErrNotFound
	case !c.alive():
		return fmt.Errorf("container is %s: %w", c.Status, runtime.ErrState)
	}
	return fn(c)
}

// imageOf returns the image capsule id runs (path and ID from its bundle).
func (r *Runtime) imageOf(id string) (runtime.Image, error) {
	spec, err := readBundle(filepath.Join(r.capsuleDir(id), bundleDir))
	if err != nil {
		return runtime.Image{}, fmt.Errorf("read bundle: %w", err)
	}
	if spec.Root == nil || !filepath.IsAbs(spec.Root.Path) {
		return runtime.Image{}, errors.New("bundle has no absolute root path")
	}
	return runtime.Image{ID: spec.Annotations[imageIDAnnotation], Path: spec.Root.Path}, nil
}

type flattenTimes struct{ copy, layer, sync time.Duration }

// buildFlat builds in tmp the image base plus capsule id's upper layer and
// returns its ID.
func (r *Runtime) buildFlat(ctx context.Context, id string, base runtime.Image, tmp string) (runtime.Image, flattenTimes, error) {
	var times flattenTimes
	if err := os.RemoveAll(tmp); err != nil {
		return runtime.Image{}, times, err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return runtime.Image{}, times, err
	}
	start := time.Now()
	if err := copyTree(ctx, base.Path, tmp); err != nil {
		return runtime.Image{}, times, fmt.Errorf("copy image: %w", err)
	}
	times.copy = time.Since(start)

	start = time.Now()
	h := sha256.New()
	io.WriteString(h, base.ID)
	h.Write([]byte{0})
	err := r.withRunning(ctx, id, func(c container) error {
		// The capsule may have been paused and restored meanwhile.
		if now, err := r.imageOf(id); err != nil {
			return err
		} else if now != base {
			return fmt.Errorf("capsule now runs image %s, not %s: %w", now.Path, base.Path, runtime.ErrState)
		}
		return r.streamUpper(ctx, c, func(layer io.Reader) error {
			stream := io.TeeReader(layer, h)
			if err := applyUpper(ctx, tmp, stream); err != nil {
				return err
			}
			// The tar reader stops at the end marker; the ID covers the
			// whole stream.
			_, err := io.Copy(io.Discard, stream)
			return err
		})
	})
	if err != nil {
		return runtime.Image{}, times, err
	}
	if err := PrepareImage(tmp); err != nil {
		return runtime.Image{}, times, err
	}
	times.layer = time.Since(start)

	start = time.Now()
	if err := syncFS(tmp); err != nil {
		return runtime.Image{}, times, err
	}
	times.sync = time.Since(start)
	return runtime.Image{ID: hex.EncodeToString(h.Sum(nil))}, times, nil
}

// streamUpper runs `runsc tar rootfs-upper` for container c and passes the
// archive to apply as runsc writes it, through a pipe: runsc opens
// /dev/fd/3 and hands it to the sandbox, which writes the archive itself.
// (Not runsc's stdout: it prints a progress line there.)
//
// gVisor reads each file of the layer whole into the sandbox's memory while
// writing it, which the capsule's own memory limit may not allow; the limit
// is raised for the duration by twice the disk space of the layer plus
// tarHeadroom. A layer with a sparse file larger than that still gets the
// sandbox killed by the cgroup: runsc has no other way out for the layer.
func (r *Runtime) streamUpper(ctx context.Context, c container, apply func(io.Reader) error) error {
	headroom := 2*filestoreBytes(c.PID, r.capsuleDir(c.ID)) + tarHeadroom
	restore, err := raiseMemoryLimit(c.PID, headroom)
	if err != nil {
		return err
	}
	defer func() {
		if err := restore(); err != nil {
			r.log.WarnContext(ctx, "flatten: memory limit not restored", "capsule_id", c.ID, "error", err)
		}
	}()

	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	tarArgs := []string{"tar", "rootfs-upper", "--file", "/dev/fd/3", c.ID}
	cmd := exec.CommandContext(ctx, r.cfg.Runsc, append(r.globalFlags(c.ID, 0), tarArgs...)...)
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = startCmd(cmd)
	pw.Close()
	if err != nil {
		return fmt.Errorf("runsc tar: %w", err)
	}
	applyErr := apply(pr)
	// On failure, closing the read end ends the sandbox's writes (EPIPE).
	pr.Close()
	if err := cmd.Wait(); err != nil {
		err = fmt.Errorf("runsc tar: %w%s", err, formatTail(stderr.Bytes()))
		r.log.DebugContext(ctx, "runsc", "args", tarArgs, "took", time.Since(start), "error", err)
		return errors.Join(err, applyErr)
	}
	r.log.DebugContext(ctx, "runsc", "args", tarArgs, "took", time.Since(start))
	return applyErr
}

// syncFS flushes the file system holding dir, so the image is complete on
// disk before its final name appears.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}

// renameNoReplace renames oldpath to newpath, failing if newpath exists
// (rename(2) would replace an empty directory).
func renameNoReplace(oldpath, newpath string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}
