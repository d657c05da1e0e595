// Package statefile writes the host agent's small state files (credentials, records, the
// pause-on-shutdown list) so that a crash leaves either the old or the new content, never a mix.
package statefile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data, mode 0600: a temporary file in the same directory, written, synced
// when sync is set, then renamed over path (and the directory synced, so the rename survives a crash).
func Write(path string, data []byte, sync bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if sync {
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	return nil
}
