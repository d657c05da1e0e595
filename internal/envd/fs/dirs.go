package fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// dirMode is the mode of every directory envd creates on a user's behalf.
const dirMode = 0o755

// MkdirAll creates path and its missing parents with mode 0755, each new
// directory owned by uid:gid (mkdir -p with ownership). It returns whether
// path itself was created; an existing non-directory anywhere on the way
// fails with ENOTDIR (or EEXIST for path itself).
func MkdirAll(path string, uid, gid int) (bool, error) {
	var missing []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err == nil {
			if !info.IsDir() {
				if p == filepath.Clean(path) {
					return false, &fs.PathError{Op: "mkdir", Path: p, Err: fs.ErrExist}
				}
				return false, &fs.PathError{Op: "mkdir", Path: p, Err: syscall.ENOTDIR}
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
		missing = append(missing, p)
		if parent := filepath.Dir(p); parent == p {
			break
		}
	}
	created := false
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := os.Mkdir(p, dirMode); err != nil {
			// Lost a race with another creator: fine if it made a directory.
			if errors.Is(err, fs.ErrExist) {
				if info, serr := os.Stat(p); serr == nil && info.IsDir() {
					continue
				}
			}
			return false, err
		}
		// Mkdir is subject to the umask; the protocol promises 0755.
		if err := os.Chmod(p, dirMode); err != nil {
			return false, err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return false, fmt.Errorf("chown %s: %w", p, err)
		}
		created = i == 0
	}
	return created, nil
}
