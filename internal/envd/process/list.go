package process

import (
	"context"
	"slices"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/process"
)

// List returns the running processes envd started; with include_exited
// (Wrenn) also the retained exited ones, and the extension fields on all.
func (s *Service) List(_ context.Context, req *connect.Request[process.ListRequest]) (*connect.Response[process.ListResponse], error) {
	ext := req.Msg.GetIncludeExited()
	s.mu.Lock()
	procs := slices.Clone(s.live)
	if ext {
		procs = append(procs, s.exited...)
	}
	s.mu.Unlock()
	out := &process.ListResponse{Processes: make([]*process.ProcessInfo, 0, len(procs))}
	for _, p := range procs {
		out.Processes = append(out.Processes, p.info(ext))
	}
	return connect.NewResponse(out), nil
}
