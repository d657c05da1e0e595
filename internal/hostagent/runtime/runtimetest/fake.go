// Package runtimetest fakes the host a capsule runs on — the isolation
// runtime, the network with an envd per capsule, the image store — for
// tests without root, and checks Runtime implementations against the
// interface's contract. Only tests import it.
package runtimetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/wrenn/wrenn/internal/hostagent/runtime"
)

// Op names a Runtime method, for FailNext and Calls.
type Op string

// The operations of a Runtime (and a Flattener).
const (
	OpCreate     Op = "create"
	OpRestore    Op = "restore"
	OpPause      Op = "pause"
	OpDestroy    Op = "destroy"
	OpStats      Op = "stats"
	OpList       Op = "list"
	OpFlatten    Op = "flatten"
	OpCheckpoint Op = "checkpoint"
)

// State is what the fake knows of a capsule.
type State string

const (
	StateGone    State = ""        // unknown to the runtime, or destroyed
	StateRunning State = "running" // created or restored
	StatePaused  State = "paused"  // checkpointed into a snapshot; nothing runs
	StateStopped State = "stopped" // died on its own (Crash); its container is left
)

// CheckpointFile is the file Pause writes into a snapshot directory; it
// holds the id of the capsule the snapshot was taken of.
const CheckpointFile = "fake-checkpoint"

// RootfsFile is the file Flatten writes into an image directory.
const RootfsFile = "fake-rootfs"

// Call is one Runtime call the fake received.
type Call struct {
	Op  Op
	ID  string
	Dir string // snapshot or image directory, when the call has one
}

// Fake is an in-memory Runtime: capsules are states in a map, a pause
// writes a small checkpoint file, a restore reads it. Tests inject failures
// with FailNext and make a capsule die with Crash. It is safe for
// concurrent use.
type Fake struct {
	mu       sync.Mutex
	capsules map[string]*capsule
	fail     map[Op][]error
	calls    []Call
}

type capsule struct {
	spec  runtime.Spec
	state State
	from  string // id the snapshot it was restored from was taken of
	cpu   uint64
}

var (
	_ runtime.Runtime   = (*Fake)(nil)
	_ runtime.Flattener = (*Fake)(nil)
)

// New returns a Fake holding no capsules.
func New() *Fake {
	return &Fake{capsules: map[string]*capsule{}, fail: map[Op][]error{}}
}

// FailNext makes the next call of op fail with err (wrapped) before it
// changes anything. Calls queue up: two FailNext fail two calls.
func (f *Fake) FailNext(op Op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = append(f.fail[op], err)
}

// Crash makes a running capsule die on its own, as a killed sandbox does:
// it is no longer listed, and its container stays until Destroy. It
// reports whether the capsule was running.
func (f *Fake) Crash(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.capsules[id]
	if !ok || c.state != StateRunning {
		return false
	}
	c.state = StateStopped
	return true
}

// State returns what the fake knows of capsule id.
func (f *Fake) State(id string) State {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.capsules[id]; ok {
		return c.state
	}
	return StateGone
}

// Spec returns the spec capsule id was last created or restored with.
func (f *Fake) Spec(id string) (runtime.Spec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.capsules[id]
	if !ok {
		return runtime.Spec{}, false
	}
	return c.spec, true
}

// RestoredFrom returns the id of the capsule whose snapshot capsule id was
// last restored from, or "" when it was created fresh.
func (f *Fake) RestoredFrom(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.capsules[id]; ok {
		return c.from
	}
	return ""
}

// IDs returns every capsule the fake holds, in any state but gone, sorted.
func (f *Fake) IDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.capsules))
	for id := range f.capsules {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Calls returns the calls received so far, oldest first.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Count returns how many calls of op were received.
func (f *Fake) Count(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Op == op {
			n++
		}
	}
	return n
}

// beginLocked records a call and returns the failure injected for it, if
// any; the caller holds f.mu.
func (f *Fake) beginLocked(op Op, id, dir string) error {
	f.calls = append(f.calls, Call{Op: op, ID: id, Dir: dir})
	q := f.fail[op]
	if len(q) == 0 {
		return nil
	}
	err := q[0]
	f.fail[op] = q[1:]
	if id == "" {
		return fmt.Errorf("fake %s: %w", op, err)
	}
	return fmt.Errorf("fake %s %s: %w", op, id, err)
}

// Create starts a capsule; any capsule the runtime still holds under the
// id, running or not, makes it fail with ErrExists.
func (f *Fake) Create(_ context.Context, spec runtime.Spec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpCreate, spec.ID, ""); err != nil {
		return err
	}
	if spec.ID == "" {
		return errors.New("fake create: capsule id is required")
	}
	if _, ok := f.capsules[spec.ID]; ok {
		return fmt.Errorf("fake create %s: %w", spec.ID, runtime.ErrExists)
	}
	f.capsules[spec.ID] = &capsule{spec: spec, state: StateRunning}
	return nil
}

// Restore starts a capsule from a snapshot Pause wrote; the id may be new
// (a template) or a paused or stopped capsule's.
func (f *Fake) Restore(_ context.Context, spec runtime.Spec, snap runtime.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpRestore, spec.ID, snap.Dir); err != nil {
		return err
	}
	if spec.ID == "" {
		return errors.New("fake restore: capsule id is required")
	}
	from, err := os.ReadFile(filepath.Join(snap.Dir, CheckpointFile))
	if err != nil {
		return fmt.Errorf("fake restore %s: not a snapshot: %w", spec.ID, err)
	}
	if c, ok := f.capsules[spec.ID]; ok && c.state == StateRunning {
		return fmt.Errorf("fake restore %s: %w", spec.ID, runtime.ErrExists)
	}
	f.capsules[spec.ID] = &capsule{spec: spec, state: StateRunning, from: string(from)}
	return nil
}

// Pause writes CheckpointFile into snap.Dir, which must exist, and stops
// the capsule.
func (f *Fake) Pause(_ context.Context, id string, snap runtime.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpPause, id, snap.Dir); err != nil {
		return err
	}
	c, ok := f.capsules[id]
	if !ok {
		return fmt.Errorf("fake pause %s: %w", id, runtime.ErrNotFound)
	}
	if c.state != StateRunning {
		return fmt.Errorf("fake pause %s: capsule is %s: %w", id, c.state, runtime.ErrState)
	}
	if err := os.WriteFile(filepath.Join(snap.Dir, CheckpointFile), []byte(id), 0o600); err != nil {
		return fmt.Errorf("fake pause %s: %w", id, err)
	}
	c.state = StatePaused
	return nil
}

// Checkpoint writes CheckpointFile into snap.Dir, which must exist; the
// capsule keeps running.
func (f *Fake) Checkpoint(_ context.Context, id string, snap runtime.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpCheckpoint, id, snap.Dir); err != nil {
		return err
	}
	c, ok := f.capsules[id]
	if !ok {
		return fmt.Errorf("fake checkpoint %s: %w", id, runtime.ErrNotFound)
	}
	if c.state != StateRunning {
		return fmt.Errorf("fake checkpoint %s: capsule is %s: %w", id, c.state, runtime.ErrState)
	}
	if err := os.WriteFile(filepath.Join(snap.Dir, CheckpointFile), []byte(id), 0o600); err != nil {
		return fmt.Errorf("fake checkpoint %s: %w", id, err)
	}
	return nil
}

// Destroy forgets the capsule; a missing one is not an error.
func (f *Fake) Destroy(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpDestroy, id, ""); err != nil {
		return err
	}
	delete(f.capsules, id)
	return nil
}

// Stats reports made-up usage of a running capsule; its CPU time grows by
// a millisecond per call.
func (f *Fake) Stats(_ context.Context, id string) (runtime.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpStats, id, ""); err != nil {
		return runtime.Stats{}, err
	}
	c, ok := f.capsules[id]
	if !ok {
		return runtime.Stats{}, fmt.Errorf("fake stats %s: %w", id, runtime.ErrNotFound)
	}
	if c.state != StateRunning {
		return runtime.Stats{}, fmt.Errorf("fake stats %s: capsule is %s: %w", id, c.state, runtime.ErrState)
	}
	c.cpu += uint64(time.Millisecond)
	return runtime.Stats{
		CPUNanos:  c.cpu,
		MemBytes:  uint64(max(c.spec.MemoryMB, 1)) << 18, // a quarter of its memory
		DiskBytes: 4096,
		At:        time.Now(),
	}, nil
}

// List returns the running capsules, sorted.
func (f *Fake) List(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpList, "", ""); err != nil {
		return nil, err
	}
	ids := []string{}
	for id, c := range f.capsules {
		if c.state == StateRunning {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Flatten writes RootfsFile into dir (which must not exist) and returns it
// as an image named after the capsule.
func (f *Fake) Flatten(_ context.Context, id, dir string) (runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.beginLocked(OpFlatten, id, dir); err != nil {
		return runtime.Image{}, err
	}
	c, ok := f.capsules[id]
	if !ok {
		return runtime.Image{}, fmt.Errorf("fake flatten %s: %w", id, runtime.ErrNotFound)
	}
	if c.state != StateRunning {
		return runtime.Image{}, fmt.Errorf("fake flatten %s: capsule is %s: %w", id, c.state, runtime.ErrState)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return runtime.Image{}, fmt.Errorf("fake flatten %s: %s exists", id, dir)
		}
		return runtime.Image{}, fmt.Errorf("fake flatten %s: %w", id, err)
	}
	content := "flattened " + id + " from " + c.spec.Image.ID
	if err := os.WriteFile(filepath.Join(dir, RootfsFile), []byte(content), 0o600); err != nil {
		return runtime.Image{}, fmt.Errorf("fake flatten %s: %w", id, err)
	}
	sum := sha256.Sum256([]byte(content))
	return runtime.Image{ID: hex.EncodeToString(sum[:]), Path: dir}, nil
}
