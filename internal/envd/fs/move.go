package fs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// Move renames source to destination, creating the destination's missing
// parents; across filesystems it copies and then removes the source.
func (s *Service) Move(ctx context.Context, req *connect.Request[filesystem.MoveRequest]) (*connect.Response[filesystem.MoveResponse], error) {
	u, src, err := s.resolve(req.Header(), req.Msg.GetSource())
	if err != nil {
		return nil, err
	}
	dst, err := ResolvePath(u, req.Msg.GetDestination(), s.defaults.DefaultWorkdir())
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(src); err != nil {
		return nil, connectErr(err, "move %s", src)
	}
	if _, err := MkdirAll(filepath.Dir(dst), int(u.UID), int(u.GID)); err != nil {
		return nil, connectErr(err, "create parents of %s", dst)
	}
	if err := move(ctx, src, dst); err != nil {
		return nil, connectErr(err, "move %s to %s", src, dst)
	}
	e, err := Entry(dst)
	if err != nil {
		return nil, connectErr(err, "stat %s", dst)
	}
	return connect.NewResponse(&filesystem.MoveResponse{Entry: e}), nil
}

func move(ctx context.Context, src, dst string) error {
	err := os.Rename(src, dst)
	if !errors.Is(err, syscall.EXDEV) {
		return err
	}
	// Copy next to the destination first, so the final step is still a
	// rename(2) with its replace semantics and no half copy is ever visible.
	tmp, err := tempName(dst)
	if err != nil {
		return err
	}
	if err := copyTree(ctx, src, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	return os.RemoveAll(src)
}

// tempName returns an unused hidden name in the directory of path.
func tempName(path string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".wrenn-"+hex.EncodeToString(b[:])), nil
}

// copyTree copies src to dst keeping modes, owners, times and symlinks.
func copyTree(ctx context.Context, src, dst string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	info, err := os.Lstat(src)
	if err != nil {
		return err
	}
	st, _ := info.Sys().(*syscall.Stat_t)
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case info.IsDir():
		if err := os.Mkdir(dst, info.Mode().Perm()); err != nil {
			return err
		}
		names, err := readNames(src)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := copyTree(ctx, filepath.Join(src, n), filepath.Join(dst, n)); err != nil {
				return err
			}
		}
	case info.Mode().IsRegular():
		if err := copyFile(src, dst, info.Mode().Perm()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("copy %s: unsupported file type %s", src, info.Mode().Type())
	}
	if st != nil {
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if info.Mode()&fs.ModeSymlink == 0 {
		if err := os.Chmod(dst, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		_ = CopyMetadata(src, dst)
		return os.Chtimes(dst, info.ModTime(), info.ModTime())
	}
	return nil
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
