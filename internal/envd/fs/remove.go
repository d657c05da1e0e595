package fs

import (
	"context"
	"os"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// Remove deletes a path recursively; a missing path is not an error.
func (s *Service) Remove(ctx context.Context, req *connect.Request[filesystem.RemoveRequest]) (*connect.Response[filesystem.RemoveResponse], error) {
	_, path, err := s.resolve(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	if err := os.RemoveAll(path); err != nil {
		return nil, connectErr(err, "remove %s", path)
	}
	return connect.NewResponse(&filesystem.RemoveResponse{}), nil
}
