package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// ListDir lists a directory up to depth levels deep, depth-first in lexical
// order, without the directory itself.
func (s *Service) ListDir(ctx context.Context, req *connect.Request[filesystem.ListDirRequest]) (*connect.Response[filesystem.ListDirResponse], error) {
	_, path, err := s.resolve(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	depth := int(req.Msg.GetDepth())
	if depth == 0 {
		depth = 1
	}
	// The root is followed when it is a symlink; entries below are not.
	info, err := os.Stat(path)
	if err != nil {
		return nil, connectErr(err, "list %s", path)
	}
	if !info.IsDir() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path %s is not a directory", path))
	}
	var entries []*filesystem.EntryInfo
	if err := walk(ctx, path, depth, &entries); err != nil {
		return nil, connectErr(err, "list %s", path)
	}
	return connect.NewResponse(&filesystem.ListDirResponse{Entries: entries}), nil
}

// walk appends the entries of dir, and of its subdirectories while depth
// allows, in pre-order. Paths are built from dir as addressed, so a symlinked
// root keeps its name in every entry path.
func walk(ctx context.Context, dir string, depth int, out *[]*filesystem.EntryInfo) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	names, err := readNames(dir)
	if err != nil {
		return err
	}
	for _, name := range names {
		p := filepath.Join(dir, name)
		info, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // vanished since the directory was read
			}
			return err
		}
		*out = append(*out, entryFromInfo(p, info))
		if depth > 1 && info.IsDir() {
			if err := walk(ctx, p, depth-1, out); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return err
			}
		}
	}
	return nil
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}
