package gvisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// inodeKey identifies a source file, to copy hard links as hard links.
type inodeKey struct{ dev, ino uint64 }

// copyTree copies the directory tree src into the existing, empty directory
// dst: regular files (reflinked where the file system allows, else copied
// with copy_file_range), directories, symlinks, device nodes and FIFOs, with
// owners, modes (setuid/setgid/sticky included), extended attributes and
// modification times; hard links within src stay hard links. Sockets are
// skipped. Its sources are images of the image store and flattened
// templates, whose capsule-written parts applyUpper sanitized.
//
// Every file is reached from its parent directory's descriptor by a single
// name opened with O_NOFOLLOW, in src as in dst, and hard links are made
// through an os.Root of dst: a symlink in either tree is copied, never
// followed, so nothing outside src is read and nothing outside dst is
// written, even if a tree changes during the copy (docs/security.md).
func copyTree(ctx context.Context, src, dst string) error {
	sfd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: src, Err: err}
	}
	defer unix.Close(sfd)
	dfd, err := unix.Open(dst, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dst, Err: err}
	}
	defer unix.Close(dfd)
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	c := treeCopier{ctx: ctx, dst: root, links: map[inodeKey]string{}}
	if err := c.copyDir(sfd, dfd, "."); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(sfd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: src, Err: err}
	}
	return c.setMeta(sfd, ".", dfd, ".", ".", &st)
}

type treeCopier struct {
	ctx   context.Context
	dst   *os.Root
	links map[inodeKey]string // first destination (relative to dst) of each multiply linked source file
}

// copyDir copies the entries of the source directory sfd into the
// destination directory dfd; rel is their path relative to the roots.
func (c *treeCopier) copyDir(sfd, dfd int, rel string) error {
	fd, err := unix.Openat(sfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: rel, Err: err}
	}
	d := os.NewFile(uintptr(fd), rel)
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", rel, err)
	}
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := c.copyEntry(sfd, dfd, name, path.Join(rel, name)); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies the entry name of the source directory sfd into the
// destination directory dfd.
func (c *treeCopier) copyEntry(sfd, dfd int, name, rel string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: rel, Err: err}
	}
	key := inodeKey{st.Dev, st.Ino}
	typ := st.Mode & unix.S_IFMT
	if first, ok := c.links[key]; ok && typ != unix.S_IFDIR {
		return c.dst.Link(first, rel)
	}
	switch typ {
	case unix.S_IFDIR:
		if err := c.copySubdir(sfd, dfd, name, rel, &st); err != nil {
			return err
		}
	case unix.S_IFREG:
		if err := copyFileAt(sfd, dfd, name, rel, &st); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := readlinkAt(sfd, name)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: rel, Err: err}
		}
		if err := unix.Symlinkat(target, dfd, name); err != nil {
			return &os.PathError{Op: "symlink", Path: rel, Err: err}
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknodat(dfd, name, st.Mode&(unix.S_IFMT|0o7777), int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: rel, Err: err}
		}
	default: // sockets belong to a running program, not to an image
		return nil
	}
	if st.Nlink > 1 && typ != unix.S_IFDIR {
		c.links[key] = rel
	}
	return c.setMeta(sfd, name, dfd, name, rel, &st)
}

// copySubdir makes the directory name in dfd and copies the source
// directory name of sfd into it; st is what the source's lstat returned.
func (c *treeCopier) copySubdir(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	if err := unix.Mkdirat(dfd, name, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: rel, Err: err}
	}
	csfd, err := openNoFollow(sfd, name, unix.O_DIRECTORY, st)
	if err != nil {
		return &os.PathError{Op: "open", Path: rel, Err: err}
	}
	defer unix.Close(csfd)
	cdfd, err := unix.Openat(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: rel, Err: err}
	}
	defer unix.Close(cdfd)
	return c.copyDir(csfd, cdfd, rel)
}

// openNoFollow opens name in dirfd read-only without following a symlink
// and checks it is still the file st describes (not swapped since the
// lstat).
func openNoFollow(dirfd int, name string, flags int, st *unix.Stat_t) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return -1, err
	}
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if now.Dev != st.Dev || now.Ino != st.Ino || now.Mode&unix.S_IFMT != st.Mode&unix.S_IFMT {
		unix.Close(fd)
		return -1, errors.New("file changed during the copy")
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// copyFileAt copies the contents of the regular file name of sfd into the
// new file name of dfd, sharing its blocks when the file system supports
// reflinks.
func copyFileAt(sfd, dfd int, name, rel string, st *unix.Stat_t) error {
	ifd, err := openNoFollow(sfd, name, 0, st)
	if err != nil {
		return &os.PathError{Op: "open", Path: rel, Err: err}
	}
	in := os.NewFile(uintptr(ifd), rel)
	defer in.Close()
	ofd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: rel, Err: err}
	}
	out := os.NewFile(uintptr(ofd), rel)
	if err := unix.IoctlFileClone(ofd, ifd); err != nil {
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", rel, err)
		}
	}
	return out.Close()
}

// readlinkAt returns the target of the symlink name in dirfd.
func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// setMeta gives the entry dname of dfd the owner, mode, extended attributes
// and times of sname of sfd (st), in that order: chown clears setuid bits
// and file capabilities. "." names the directory itself.
func (c *treeCopier) setMeta(sfd int, sname string, dfd int, dname, rel string, st *unix.Stat_t) error {
	if err := unix.Fchownat(dfd, dname, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lchown", Path: rel, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		// dname is what copyEntry just made, of the type st names: not a
		// symlink to follow.
		if err := unix.Fchmodat(dfd, dname, st.Mode&0o7777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: rel, Err: err}
		}
	}
	if err := copyXattrs(fdPath(sfd, sname), fdPath(dfd, dname)); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(dfd, dname, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: rel, Err: err}
	}
	return nil
}

// fdPath names the entry name of the open directory dirfd for the
// path-only xattr calls (there is no lgetxattrat before Linux 6.13); the
// /proc/self/fd link pins the directory, and the l* calls do not follow a
// symlink at name.
func fdPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// copyXattrs copies the extended attributes of src to dst, symlinks not
// followed. A destination file system without xattr support is not an
// error.
func copyXattrs(src, dst string) error {
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		val, err := getXattr(src, name)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, val, 0); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil
			}
			return &os.PathError{Op: "lsetxattr " + name, Path: dst, Err: err}
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(path, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			sz, err := unix.Llistxattr(path, nil)
			if err != nil {
				return nil, &os.PathError{Op: "llistxattr", Path: path, Err: err}
			}
			buf = make([]byte, sz+64)
			continue
		case errors.Is(err, unix.EOPNOTSUPP):
			return nil, nil
		case err != nil:
			return nil, &os.PathError{Op: "llistxattr", Path: path, Err: err}
		}
		var names []string
		for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
			if name != "" {
				names = append(names, name)
			}
		}
		return names, nil
	}
}

func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Lgetxattr(path, name, nil)
			if err != nil {
				return nil, &os.PathError{Op: "lgetxattr " + name, Path: path, Err: err}
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "lgetxattr " + name, Path: path, Err: err}
		}
		return buf[:n], nil
	}
}
