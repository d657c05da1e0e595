// Package images builds and caches the read-only root filesystems ("base
// images") capsules boot from, addressed by the content of their recipe.
//
// Layout under Store.Dir:
//
//	<name>/.lock               flock serialising builds and removals of <name>
//	<name>/<id>/rootfs/        the image; never written after the build
//	<name>/<id>/image.json     Info
//	<name>/<id>/build.log      output of the build's commands
//	<name>/.tmp-*              a build or removal in progress (or crashed)
//
// A build fills a temporary directory and renames it into place, so an
// image directory is complete or absent. Building needs root.
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Errors the Store returns, wrapped. An unknown recipe is a not found of the
// agent's error kinds; a closed store (the agent is stopping) is internal.
var (
	ErrUnknown = runtime.NewError(runtime.ErrNotFound, "unknown image recipe")
	ErrClosed  = errors.New("image store closed")
)

// Info describes a built image; it is stored as image.json beside the
// rootfs.
type Info struct {
	Name      string    `json:"name"`
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// SizeBytes is the disk space the rootfs takes (allocated blocks,
	// hard links counted once).
	SizeBytes int64 `json:"size_bytes"`
	// Path is the rootfs directory.
	Path string `json:"-"`
}

// Image is the capsule runtime's view of the image.
func (i Info) Image() runtime.Image { return runtime.Image{ID: i.ID, Path: i.Path} }

const (
	infoFile  = "image.json"
	rootfsDir = "rootfs"
	tmpPrefix = ".tmp-"
	lockFile  = ".lock"
)

// Store builds images on first use and keeps them under Dir. It is safe for
// concurrent use, also by several processes sharing Dir. The zero value
// with Dir set is ready; Close stops builds in progress.
type Store struct {
	Dir string // <data dir>/images
	Log *slog.Logger

	mu      sync.Mutex
	flights map[string]*flight // builds in progress by name/id; guarded by mu
	closed  bool               // guarded by mu
	// Builds run under ctx, not a caller's context: a base image takes
	// minutes, longer than the request that first asks for it should wait,
	// and the next request then finds it done. Close cancels ctx.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // build goroutines

	builds atomic.Int64 // completed builds
}

// flight is one build that any number of Ensure calls wait for.
type flight struct {
	done chan struct{}
	info Info  // set before done is closed
	err  error // set before done is closed
}

// Ensure returns the image of the recipe name, building it first if this
// host does not have it. Concurrent calls for the same image build it once.
// When ctx ends first, Ensure returns ctx's error but the build goes on.
func (s *Store) Ensure(ctx context.Context, name string) (runtime.Image, error) {
	r, id, err := current(name)
	if err != nil {
		return runtime.Image{}, err
	}
	info, err := s.stat(name, id)
	if err == nil {
		return info.Image(), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return runtime.Image{}, err
	}
	f, err := s.join(r, id)
	if err != nil {
		return runtime.Image{}, err
	}
	select {
	case <-f.done:
		if f.err != nil {
			return runtime.Image{}, f.err
		}
		return f.info.Image(), nil
	case <-ctx.Done():
		return runtime.Image{}, fmt.Errorf("image %s: waiting for build: %w", name, context.Cause(ctx))
	}
}

// Built returns the current image of the recipe name when this host has it; an error wrapping
// fs.ErrNotExist when it is not built. It builds nothing.
func (s *Store) Built(name string) (Info, error) {
	_, id, err := current(name)
	if err != nil {
		return Info{}, err
	}
	return s.stat(name, id)
}

// current returns the recipe name and the id of its image from today's definition and inputs.
func current(name string) (*recipe, string, error) {
	r, ok := recipes[name]
	if !ok {
		return nil, "", fmt.Errorf("%w: %q (known: %s)", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	id, err := r.id()
	if err != nil {
		return nil, "", err
	}
	return r, id, nil
}

// join returns the flight building r's image id, starting one if none is.
func (s *Store) join(r *recipe, id string) (*flight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	key := r.name + "/" + id
	if f, ok := s.flights[key]; ok {
		return f, nil
	}
	if s.cancel == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
	if s.flights == nil {
		s.flights = map[string]*flight{}
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f.info, f.err = s.build(s.ctx, r, id)
		s.mu.Lock()
		delete(s.flights, key)
		s.mu.Unlock()
		close(f.done)
	}()
	return f, nil
}

// Close cancels builds in progress and waits for them to stop. Ensure
// fails with ErrClosed afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// build builds r's image id unless another process has meanwhile.
func (s *Store) build(ctx context.Context, r *recipe, id string) (Info, error) {
	log := s.logger().With("image", r.name, "image_id", id)
	dir, err := s.recipeDir(r.name)
	if err != nil {
		return Info{}, err
	}
	unlock, err := lock(ctx, dir)
	if err != nil {
		return Info{}, fmt.Errorf("image %s: %w", r.name, err)
	}
	defer unlock()

	info, err := s.stat(r.name, id)
	if err == nil {
		return info, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return Info{}, err
	}
	if err := sweep(dir, log); err != nil {
		return Info{}, fmt.Errorf("image %s: %w", r.name, err)
	}
	final := filepath.Join(dir, id)
	if _, err := os.Lstat(final); err == nil {
		// An image directory without image.json was not made by a build.
		log.Warn("removing incomplete image directory", "path", final)
		if err := removeTree(final); err != nil {
			return Info{}, fmt.Errorf("image %s: %w", r.name, err)
		}
	}

	start := time.Now()
	log.Info("building image")
	tmp, err := os.MkdirTemp(dir, tmpPrefix+id[:12]+"-")
	if err != nil {
		return Info{}, fmt.Errorf("image %s: %w", r.name, err)
	}
	done := false
	defer func() {
		if !done {
			if err := removeTree(tmp); err != nil {
				log.Warn("remove failed build", "path", tmp, "err", err)
			}
		}
	}()
	info, err = buildInto(ctx, r, id, tmp)
	if err != nil {
		return Info{}, fmt.Errorf("build image %s: %w", r.name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return Info{}, fmt.Errorf("build image %s: %w", r.name, err)
	}
	done = true
	if err := syncDir(dir); err != nil {
		return Info{}, fmt.Errorf("build image %s: %w", r.name, err)
	}
	s.builds.Add(1)
	log.Info("built image", "duration", time.Since(start).Round(time.Millisecond), "size_bytes", info.SizeBytes)
	info.Path = filepath.Join(final, rootfsDir)
	return info, nil
}

// buildInto runs r's build in tmp/rootfs and writes tmp/image.json. All of
// tmp is on disk when it returns.
func buildInto(ctx context.Context, r *recipe, id, tmp string) (Info, error) {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Info{}, err
	}
	rootfs := filepath.Join(tmp, rootfsDir)
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return Info{}, err
	}
	logf, err := os.Create(filepath.Join(tmp, "build.log"))
	if err != nil {
		return Info{}, err
	}
	defer logf.Close()
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return Info{}, err
	}
	defer root.Close()
	if err := r.build(ctx, &builder{dir: rootfs, root: root, output: logf}); err != nil {
		return Info{}, err
	}
	// The image is shared by every capsule booting from it: root owns its
	// top, whatever the build's umask or tools left.
	if err := os.Chown(rootfs, 0, 0); err != nil {
		return Info{}, err
	}
	if err := os.Chmod(rootfs, 0o755); err != nil {
		return Info{}, err
	}
	size, err := diskUsage(rootfs)
	if err != nil {
		return Info{}, err
	}
	info := Info{Name: r.name, ID: id, CreatedAt: time.Now().UTC(), SizeBytes: size}
	enc, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return Info{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, infoFile), append(enc, '\n'), 0o644); err != nil {
		return Info{}, err
	}
	if err := logf.Close(); err != nil {
		return Info{}, err
	}
	// One syncfs instead of an fsync per file: after the rename, a crash
	// must not leave an image.json beside a half-written rootfs.
	return info, syncFS(tmp)
}

// stat reads the image.json of name/id; fs.ErrNotExist when it is absent.
func (s *Store) stat(name, id string) (Info, error) {
	dir, err := s.abs()
	if err != nil {
		return Info{}, err
	}
	return readInfo(filepath.Join(dir, name, id))
}

func readInfo(imageDir string) (Info, error) {
	b, err := os.ReadFile(filepath.Join(imageDir, infoFile))
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("read %s: %w", filepath.Join(imageDir, infoFile), err)
	}
	info.Path = filepath.Join(imageDir, rootfsDir)
	return info, nil
}

// List returns the images on this host, by name and then creation time.
func (s *Store) List() ([]Info, error) {
	dir, err := s.abs()
	if err != nil {
		return nil, err
	}
	names, err := readDirNames(dir)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []Info
	for _, name := range names {
		ids, err := readDirNames(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		for _, id := range ids {
			info, err := readInfo(filepath.Join(dir, name, id))
			if errors.Is(err, fs.ErrNotExist) {
				continue // not an image: a stray directory Ensure will replace
			}
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	return out, nil
}

// Remove deletes the image name/id; a missing image is not an error. The
// caller makes sure no capsule, paused capsule or template uses it.
func (s *Store) Remove(ctx context.Context, name, id string) error {
	if !validElem(name) || !validElem(id) {
		return fmt.Errorf("remove image %q/%q: invalid name or id", name, id)
	}
	dir, err := s.abs()
	if err != nil {
		return err
	}
	dir = filepath.Join(dir, name)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	unlock, err := lock(ctx, dir)
	if err != nil {
		return fmt.Errorf("remove image %s/%s: %w", name, id, err)
	}
	defer unlock()
	return s.removeLocked(dir, id)
}

// removeLocked removes dir/id, holding dir's lock. The image disappears
// at once by a rename; a crash while deleting leaves a temporary directory
// the next build or removal sweeps away.
func (s *Store) removeLocked(dir, id string) error {
	tmp, err := os.MkdirTemp(dir, tmpPrefix+"rm-")
	if err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	err = os.Rename(filepath.Join(dir, id), filepath.Join(tmp, id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.Remove(tmp)
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	if err := removeTree(tmp); err != nil {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	return nil
}

// Prune removes the images of recipe name that are not its current one
// (older definitions or inputs) and for which keep returns false; keep
// should report images that capsules, paused capsules or templates still
// use. It returns the removed images.
func (s *Store) Prune(ctx context.Context, name string, keep func(Info) bool) ([]Info, error) {
	r, ok := recipes[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	current, err := r.id()
	if err != nil {
		return nil, err
	}
	dir, err := s.recipeDir(name)
	if err != nil {
		return nil, err
	}
	unlock, err := lock(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("prune images %s: %w", name, err)
	}
	defer unlock()
	if err := sweep(dir, s.logger()); err != nil {
		return nil, fmt.Errorf("prune images %s: %w", name, err)
	}
	ids, err := readDirNames(dir)
	if err != nil {
		return nil, fmt.Errorf("prune images %s: %w", name, err)
	}
	var removed []Info
	for _, id := range ids {
		if id == current {
			continue
		}
		info, err := readInfo(filepath.Join(dir, id))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		if err == nil && keep != nil && keep(info) {
			continue
		}
		if err := s.removeLocked(dir, id); err != nil {
			return removed, err
		}
		if info.ID != "" {
			removed = append(removed, info)
		}
	}
	return removed, nil
}

// recipeDir returns, creating it, the directory holding name's images.
func (s *Store) recipeDir(name string) (string, error) {
	dir, err := s.abs()
	if err != nil {
		return "", err
	}
	dir = filepath.Join(dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	return dir, nil
}

// abs is Dir made absolute: image paths end up in capsule records.
func (s *Store) abs() (string, error) {
	if s.Dir == "" {
		return "", errors.New("image store: Dir is not set")
	}
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	return dir, nil
}

func (s *Store) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

// readDirNames lists dir without dot entries (locks, temporary
// directories); a missing dir is empty.
func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

func validElem(s string) bool {
	return s != "" && !strings.HasPrefix(s, ".") && !strings.ContainsAny(s, `/\`)
}
