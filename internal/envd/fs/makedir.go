package fs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// MakeDir creates a directory and its missing parents, owned by the user.
func (s *Service) MakeDir(ctx context.Context, req *connect.Request[filesystem.MakeDirRequest]) (*connect.Response[filesystem.MakeDirResponse], error) {
	u, path, err := s.resolve(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	if err := existingDirError(path); err != nil {
		return nil, err
	}
	created, err := MkdirAll(path, int(u.UID), int(u.GID))
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s exists and is not a directory", path))
		}
		return nil, connectErr(err, "make directory %s", path)
	}
	if !created {
		return nil, connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("directory %s already exists", path))
	}
	e, err := Entry(path)
	if err != nil {
		return nil, connectErr(err, "stat %s", path)
	}
	return connect.NewResponse(&filesystem.MakeDirResponse{Entry: e}), nil
}

// existingDirError reports why path cannot be made: already_exists for a
// directory (or a link to one), invalid_argument for anything else there.
func existingDirError(path string) error {
	if _, err := os.Lstat(path); err != nil {
		return nil // missing, or a parent problem MkdirAll will report
	}
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("directory %s already exists", path))
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s exists and is not a directory", path))
}
