package gvisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// skipped. Symlinks are copied, never followed.
func copyTree(ctx context.Context, src, dst string) error {
	c := treeCopier{ctx: ctx, links: map[inodeKey]string{}}
	if err := c.copyDir(src, dst); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	return c.setMeta(src, dst, &st)
}

type treeCopier struct {
	ctx   context.Context
	links map[inodeKey]string // first destination of each multiply linked source file
}

// copyDir copies the entries of src into the existing directory dst.
func (c *treeCopier) copyDir(src, dst string) error {
	d, err := os.Open(src)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := c.copyEntry(filepath.Join(src, name), filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}

func (c *treeCopier) copyEntry(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	key := inodeKey{st.Dev, st.Ino}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		if err := c.copyDir(src, dst); err != nil {
			return err
		}
	case unix.S_IFREG:
		if first, ok := c.links[key]; ok {
			return os.Link(first, dst)
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
	case unix.S_IFLNK:
		if first, ok := c.links[key]; ok {
			return os.Link(first, dst)
		}
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if first, ok := c.links[key]; ok {
			return os.Link(first, dst)
		}
		if err := unix.Mknod(dst, st.Mode&(unix.S_IFMT|0o7777), int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default: // sockets belong to a running program, not to an image
		return nil
	}
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		c.links[key] = dst
	}
	return c.setMeta(src, dst, &st)
}

// copyFile copies the contents of the regular file src into the new file
// dst, sharing its blocks when the file system supports reflinks.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err != nil {
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	return out.Close()
}

// setMeta gives dst the owner, mode, extended attributes and times of src,
// in that order: chown clears setuid bits and file capabilities.
func (c *treeCopier) setMeta(src, dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: dst, Err: err}
	}
	return nil
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
