package fs

import (
	"context"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// Stat describes one path without following a final symlink.
func (s *Service) Stat(ctx context.Context, req *connect.Request[filesystem.StatRequest]) (*connect.Response[filesystem.StatResponse], error) {
	_, path, err := s.resolve(req.Header(), req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	e, err := Entry(path)
	if err != nil {
		return nil, connectErr(err, "stat %s", path)
	}
	return connect.NewResponse(&filesystem.StatResponse{Entry: e}), nil
}
