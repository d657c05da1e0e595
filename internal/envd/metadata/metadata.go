// Package metadata reads the capsule identity the host publishes to envd
// (docs/envd.md): the capsule (sandbox) id and the template id. /init
// re-reads it so a capsule restored from a snapshot learns its new identity.
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Metadata is the host-provided identity of the capsule.
type Metadata struct {
	SandboxID  string `json:"sandbox_id"`
	TemplateID string `json:"template_id"`
}

// Source yields the current metadata. The gVisor runtime writes a File; a
// Firecracker backend will provide another Source reading MMDS.
type Source interface {
	Read(ctx context.Context) (Metadata, error)
}

// File reads metadata from a JSON file the host runtime writes into the
// capsule's filesystem.
type File struct {
	Path string
}

var _ Source = File{}

// Read returns the file's metadata; a missing file yields empty metadata and
// no error (a bare local run has no host).
func (f File) Read(ctx context.Context) (Metadata, error) {
	if err := ctx.Err(); err != nil {
		return Metadata{}, err
	}
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Metadata{}, nil
	}
	if err != nil {
		return Metadata{}, fmt.Errorf("read metadata: %w", err)
	}
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return Metadata{}, fmt.Errorf("parse metadata %s: %w", f.Path, err)
	}
	return m, nil
}
