// Package runtime holds the host agent's domain types: what a capsule is, the
// Runtime interface every isolation backend implements, and the agent's
// error kinds. The gVisor
// backend lives in runtime/gvisor; a Firecracker backend fits the same
// interface (pause = memory snapshot, resume = restore, snapshot = template).
package runtime

import (
	"context"
	"time"
)

// Network is the part of a capsule's network a runtime needs: the namespace
// to run in and, for backends that take the address over (gVisor moves it
// into its netstack), what to put back before a restore.
type Network struct {
	NetnsPath string // /var/run/netns/<name>
	Interface string // the capsule-side interface inside the namespace
	Address   string // capsule address in CIDR form, e.g. 10.11.0.2/30
	Gateway   string // host-side address, the default route
}

// Image is a read-only root filesystem a capsule boots from: a directory
// tree on the host (gVisor) or a disk image (Firecracker).
type Image struct {
	ID   string // content address (sha256 hex) of the image
	Path string // directory (gVisor) or file (Firecracker)
}

// Spec is everything needed to start a capsule.
type Spec struct {
	ID       string // capsule id, "cl-…"
	VCPUs    int
	MemoryMB int
	DiskMB   int // bound on the capsule's writable layer
	Image    Image
	Network  Network
	// MetadataDir is a host directory the runtime exposes read-only inside
	// the capsule at /.wrenn/meta (envd reads /.wrenn/meta/metadata.json).
	MetadataDir string
	// Envd is the host path of the envd binary to run as init.
	Envd string
}

// Snapshot is a saved capsule: memory, processes and file changes. A paused
// capsule's snapshot lives in its own directory; a template's is a copy.
type Snapshot struct {
	Dir string // directory holding the backend's snapshot files
}

// Stats are a running capsule's resource usage on the host.
type Stats struct {
	CPUNanos  uint64 // cumulative CPU time
	MemBytes  uint64 // current host memory charged to the capsule
	DiskBytes uint64 // bytes in the capsule's writable layer / snapshot
	At        time.Time
}

// Runtime runs capsules in one isolation backend. Implementations are safe
// for concurrent use on different capsule ids. Every method is idempotent
// where that makes sense: Destroy of a missing capsule returns nil.
type Runtime interface {
	// Create boots spec.Image with envd as init and returns once the
	// backend reports the capsule running (not envd ready).
	Create(ctx context.Context, spec Spec) error
	// Restore starts a capsule from snap (a paused capsule's own snapshot or
	// a template's) under spec, which may carry a new id, network and
	// metadata. The snapshot is only read; it can be restored many times.
	Restore(ctx context.Context, spec Spec, snap Snapshot) error
	// Pause saves the capsule to snap.Dir (created empty by the caller) and
	// frees its CPU, memory and processes on the host. The caller quiesces
	// envd (/snapshot/prepare) first.
	Pause(ctx context.Context, id string, snap Snapshot) error
	// Destroy stops the capsule and removes everything the runtime created
	// for it on the host. Snapshots are the caller's to remove.
	Destroy(ctx context.Context, id string) error
	// Stats reports the resource usage of a running capsule.
	Stats(ctx context.Context, id string) (Stats, error)
	// List returns the ids of capsules the backend is running, including
	// ones a previous agent process started.
	List(ctx context.Context) ([]string, error)
}

// Flattener is implemented by runtimes that can write a capsule's current
// root filesystem (image plus every change) as a new standalone image.
type Flattener interface {
	// Flatten writes the running capsule's root filesystem into dir (which
	// must not exist) and returns it as an Image.
	Flatten(ctx context.Context, id, dir string) (Image, error)
}

// Checkpointer is implemented by runtimes that can save a running capsule
// without stopping it, so that copies can be restored from the snapshot
// while it runs on (fork).
type Checkpointer interface {
	// Checkpoint saves the capsule to snap.Dir (created empty by the
	// caller) like Runtime.Pause, but the capsule keeps running. The
	// caller quiesces envd first.
	Checkpoint(ctx context.Context, id string, snap Snapshot) error
}
