package gvisor

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The layout of `runsc tar rootfs-upper`, gVisor's serialization of the
// tmpfs upper layer of a rootfs overlay (pkg/sentry/fsimpl/tmpfs/tar.go):
//
//   - Entries are named "./path", directories "./path/"; "./" (the root)
//     comes first and every directory comes before its children. Only
//     directories that exist in the upper layer appear, so an entry's parent
//     is always an earlier directory entry.
//   - A deleted lower-layer file is a whiteout: a character device 0/0, as in
//     Linux overlayfs. gVisor uses one whiteout inode for all of them, so the
//     first is written as a device and every later one as a hard link to it.
//   - A directory that hides the lower layer's directory of the same path
//     (created anew after a delete, or renamed) carries the xattr
//     trusted.overlay.opaque=y as the PAX record SCHILY.xattr.….
//   - Other xattrs are SCHILY.xattr.<name> PAX records; POSIX ACLs
//     (system.posix_acl_*) are base64 (no padding) of the xattr value.
//   - Hard links within the layer are tar hard links to the first path.
//   - Sockets are left out; times are modification times only, in whole
//     seconds (Go's tar writer picks USTAR when nothing needs PAX).
const (
	paxXattr        = "SCHILY.xattr."
	opaqueXattr     = "trusted.overlay.opaque"
	userOpaqueXattr = "user.overlay.opaque"
)

// applyUpper applies the upper-layer tar stream r on top of the root
// filesystem copy in dir: whiteouts delete, opaque directories replace the
// directory below them, everything else is created or replaced with its
// owner, mode, xattrs and modification time.
//
// The stream comes out of the sandbox, so it is not trusted: every path is
// resolved inside dir (os.Root), names with ".." or a leading "/" are
// refused, and an entry is only accepted below a directory this stream
// itself made sure is a real directory, so nothing is ever written through a
// symlink, not even one inside dir. Its contents are sanitized, as the
// image is later a file tree on the host (docs/security.md): device nodes
// other than whiteouts are left out (and hard links to them), setuid and
// setgid bits are dropped (setgid stays on directories, where it only
// picks the group of new files), and only user.* xattrs and POSIX ACLs are
// kept (no security.capability, no security.selinux, no trusted.*).
func applyUpper(ctx context.Context, dir string, r io.Reader) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	a := &upperApplier{
		root:      root,
		dirs:      map[string]bool{".": true},
		whiteouts: map[string]bool{},
		devices:   map[string]bool{},
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read upper layer: %w", err)
		}
		if err := a.apply(h, tr); err != nil {
			return fmt.Errorf("upper layer entry %q: %w", h.Name, err)
		}
	}
	// Directory times last: creating their children changed them.
	for _, d := range a.dirTimes {
		if !a.dirs[d.path] {
			continue // replaced by a later entry
		}
		if err := root.Chtimes(d.path, d.mtime, d.mtime); err != nil {
			return err
		}
	}
	return nil
}

type upperApplier struct {
	root *os.Root
	// dirs are the paths made sure to be real directories, parents first;
	// removing one removes its descendants from the set.
	dirs      map[string]bool
	whiteouts map[string]bool // paths of whiteout devices (link targets)
	devices   map[string]bool // paths of device nodes left out (link targets)
	dirTimes  []dirTime
}

type dirTime struct {
	path  string
	mtime time.Time
}

func (a *upperApplier) apply(h *tar.Header, body io.Reader) error {
	p, err := entryPath(h.Name)
	if err != nil {
		return err
	}
	if p != "." && !a.dirs[path.Dir(p)] {
		return fmt.Errorf("parent %s is not a directory of the layer", path.Dir(p))
	}
	if a.isWhiteout(h) {
		if p == "." {
			return errors.New("whiteout of the root")
		}
		if err := a.remove(p); err != nil {
			return err
		}
		a.whiteouts[p] = true
		return nil
	}
	if p == "." && h.Typeflag != tar.TypeDir {
		return errors.New("root is not a directory")
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return a.dir(p, h)
	case tar.TypeReg:
		return a.file(p, h, body)
	case tar.TypeSymlink:
		return a.symlink(p, h)
	case tar.TypeLink:
		old, err := entryPath(h.Linkname)
		if err != nil {
			return fmt.Errorf("link target: %w", err)
		}
		if err := a.remove(p); err != nil {
			return err
		}
		if a.devices[old] {
			a.devices[p] = true
			return nil
		}
		return a.root.Link(old, p)
	case tar.TypeChar, tar.TypeBlock:
		// Not recreated: a device node in an image would be one on the
		// host too. What the capsule replaced with it is gone all the same.
		if err := a.remove(p); err != nil {
			return err
		}
		a.devices[p] = true
		return nil
	case tar.TypeFifo:
		return a.node(p, h)
	default:
		return fmt.Errorf("unsupported type %q", h.Typeflag)
	}
}

// entryPath turns an entry name ("./a/b", "./a/") into a path relative to
// the root ("a/b", "a", "." for the root itself).
func entryPath(name string) (string, error) {
	n := strings.TrimRight(name, "/")
	if n == "" || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("bad path %q", name)
	}
	for c := range strings.SplitSeq(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("path %q leaves the root", name)
		}
	}
	p := path.Clean(n)
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("path %q leaves the root", name)
	}
	return p, nil
}

func (a *upperApplier) isWhiteout(h *tar.Header) bool {
	switch h.Typeflag {
	case tar.TypeChar:
		return h.Devmajor == 0 && h.Devminor == 0
	case tar.TypeLink:
		p, err := entryPath(h.Linkname)
		return err == nil && a.whiteouts[p]
	}
	return false
}

// remove deletes whatever is at p, if anything.
func (a *upperApplier) remove(p string) error {
	if p == "." {
		return errors.New("cannot replace the root")
	}
	if err := a.root.RemoveAll(p); err != nil {
		return err
	}
	if a.dirs[p] {
		prefix := p + "/"
		for d := range a.dirs {
			if d == p || strings.HasPrefix(d, prefix) {
				delete(a.dirs, d)
			}
		}
	}
	delete(a.whiteouts, p)
	delete(a.devices, p)
	return nil
}

func (a *upperApplier) dir(p string, h *tar.Header) error {
	opaque := h.PAXRecords[paxXattr+opaqueXattr] == "y" || h.PAXRecords[paxXattr+userOpaqueXattr] == "y"
	fi, err := a.root.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		err = a.root.Mkdir(p, 0o700)
	case err != nil: // returned below
	case !fi.IsDir() || (opaque && p != "."):
		// A file or symlink replaced by a directory, or a directory whose
		// lower-layer contents are hidden: start from an empty one.
		if err = a.remove(p); err == nil {
			err = a.root.Mkdir(p, 0o700)
		}
	case opaque: // the root itself: empty it
		err = a.emptyRoot()
	}
	if err != nil {
		return err
	}
	a.dirs[p] = true
	d, err := a.root.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := setOwnerMode(d, h); err != nil {
		return err
	}
	a.dirTimes = append(a.dirTimes, dirTime{p, h.ModTime})
	return nil
}

func (a *upperApplier) emptyRoot() error {
	d, err := a.root.Open(".")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := a.remove(n); err != nil {
			return err
		}
	}
	return nil
}

func (a *upperApplier) file(p string, h *tar.Header, body io.Reader) error {
	if err := a.remove(p); err != nil {
		return err
	}
	f, err := a.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	if err := setOwnerMode(f, h); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return a.root.Chtimes(p, h.ModTime, h.ModTime)
}

func (a *upperApplier) symlink(p string, h *tar.Header) error {
	if err := a.remove(p); err != nil {
		return err
	}
	if err := a.root.Symlink(h.Linkname, p); err != nil {
		return err
	}
	if err := a.root.Lchown(p, h.Uid, h.Gid); err != nil {
		return err
	}
	return a.inParent(p, func(dirfd int, name string) error {
		if err := setXattrsAt(dirfd, name, h); err != nil {
			return err
		}
		return setTimesAt(dirfd, name, h.ModTime)
	})
}

// node makes a FIFO (device nodes are never made, see applyUpper).
func (a *upperApplier) node(p string, h *tar.Header) error {
	if err := a.remove(p); err != nil {
		return err
	}
	return a.inParent(p, func(dirfd int, name string) error {
		if err := unix.Mknodat(dirfd, name, unix.S_IFIFO|0o600, 0); err != nil {
			return &os.PathError{Op: "mknod", Path: p, Err: err}
		}
		if err := unix.Fchownat(dirfd, name, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "chown", Path: p, Err: err}
		}
		if err := unix.Fchmodat(dirfd, name, safeMode(h), 0); err != nil {
			return &os.PathError{Op: "chmod", Path: p, Err: err}
		}
		if err := setXattrsAt(dirfd, name, h); err != nil {
			return err
		}
		return setTimesAt(dirfd, name, h.ModTime)
	})
}

// inParent calls fn with a descriptor of p's parent directory and p's name
// in it, for the calls os.Root lacks.
func (a *upperApplier) inParent(p string, fn func(dirfd int, name string) error) error {
	d, err := a.root.Open(path.Dir(p))
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), path.Base(p))
}

// setOwnerMode gives the open file f the owner, mode and xattrs of h. The
// mode comes after chown, which clears setuid and setgid bits.
func setOwnerMode(f *os.File, h *tar.Header) error {
	if err := f.Chown(h.Uid, h.Gid); err != nil {
		return err
	}
	if err := unix.Fchmod(int(f.Fd()), safeMode(h)); err != nil {
		return &os.PathError{Op: "chmod", Path: f.Name(), Err: err}
	}
	return eachXattr(h, func(name string, val []byte) error {
		return unix.Fsetxattr(int(f.Fd()), name, val, 0)
	})
}

// setXattrsAt sets h's xattrs on name in dirfd without following a symlink
// (there is no lsetxattrat before Linux 6.13; the /proc/self/fd path pins
// the directory).
func setXattrsAt(dirfd int, name string, h *tar.Header) error {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
	return eachXattr(h, func(xname string, val []byte) error {
		return unix.Lsetxattr(p, xname, val, 0)
	})
}

// safeMode is h's permission bits without setuid, and without setgid but
// on a directory.
func safeMode(h *tar.Header) uint32 {
	mode := uint32(h.Mode & 0o7777)
	if h.Typeflag == tar.TypeDir {
		return mode &^ unix.S_ISUID
	}
	return mode &^ (unix.S_ISUID | unix.S_ISGID)
}

// keptXattr reports whether the xattr name of a layer entry is written to
// the image: user.* but overlay bookkeeping, and POSIX ACLs. security.*
// (file capabilities, LSM labels) and trusted.* would grant or claim
// privileges on the host.
func keptXattr(name string) bool {
	switch {
	case strings.HasPrefix(name, "user.overlay."):
		return false
	case strings.HasPrefix(name, "user."):
		return true
	}
	return name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// eachXattr calls set for every xattr in h's PAX records that keptXattr
// allows, decoding gVisor's base64 ACLs. A file system without support for
// an xattr is not an error.
func eachXattr(h *tar.Header, set func(name string, val []byte) error) error {
	for k, v := range h.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok || !keptXattr(name) {
			continue
		}
		val := []byte(v)
		if name == "system.posix_acl_access" || name == "system.posix_acl_default" {
			var err error
			if val, err = base64.RawStdEncoding.DecodeString(v); err != nil {
				return fmt.Errorf("xattr %s: %w", name, err)
			}
		}
		if err := set(name, val); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func setTimesAt(dirfd int, name string, mtime time.Time) error {
	ts, err := unix.TimeToTimespec(mtime)
	if err != nil {
		return err
	}
	if err := unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: name, Err: err}
	}
	return nil
}
