package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"

	"github.com/wrenn/wrenn/api/envd/filesystem"
	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/hostagent/envdclient"
)

// File calls run as the capsule's default user (capsules.Info.DefaultUser;
// empty: envd's own default).

func checkFile(id, path string) error {
	return firstErr(checkSandboxID(id), checkPath(path))
}

// fileEnvd is the preamble of every file call: it returns the envd of capsule id and the user the
// call runs as once the user may access path as a, and done to release the capsule.
func (s *Server) fileEnvd(ctx context.Context, id, path string, a access) (c *envdclient.Client, user string, done func(), err error) {
	c, info, done, err := s.envd(ctx, id)
	if err != nil {
		return nil, "", nil, err
	}
	if err := checkAccess(ctx, c, info.DefaultUser, path, a); err != nil {
		done()
		return nil, "", nil, s.fail(ctx, "access check", id, err)
	}
	return c, info.DefaultUser, done, nil
}

// WriteFile writes a whole file (at most maxFileBytes), creating parents.
func (s *Server) WriteFile(ctx context.Context, req *connect.Request[v1.WriteFileRequest]) (*connect.Response[v1.WriteFileResponse], error) {
	m := req.Msg
	if err := checkFile(m.GetSandboxId(), m.GetPath()); err != nil {
		return nil, err
	}
	if len(m.GetContent()) > maxFileBytes {
		return nil, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("content is larger than %d MiB: use WriteFileStream", maxFileBytes>>20))
	}
	c, user, done, err := s.fileEnvd(ctx, m.GetSandboxId(), m.GetPath(), accessWrite)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := c.Upload(ctx, m.GetPath(), user, bytes.NewReader(m.GetContent())); err != nil {
		return nil, s.fail(ctx, "write file", m.GetSandboxId(), err)
	}
	entry, err := stat(ctx, c, m.GetPath(), user)
	if err != nil {
		return nil, s.fail(ctx, "write file", m.GetSandboxId(), err)
	}
	return connect.NewResponse(&v1.WriteFileResponse{Entry: entry}), nil
}

// ReadFile reads a whole file of at most maxFileBytes; a larger file is
// FailedPrecondition (read it with ReadFileStream).
func (s *Server) ReadFile(ctx context.Context, req *connect.Request[v1.ReadFileRequest]) (*connect.Response[v1.ReadFileResponse], error) {
	m := req.Msg
	if err := checkFile(m.GetSandboxId(), m.GetPath()); err != nil {
		return nil, err
	}
	c, user, done, err := s.fileEnvd(ctx, m.GetSandboxId(), m.GetPath(), accessRead)
	if err != nil {
		return nil, err
	}
	defer done()
	rc, err := c.Download(ctx, m.GetPath(), user)
	if err != nil {
		return nil, s.fail(ctx, "read file", m.GetSandboxId(), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxFileBytes+1))
	if err != nil {
		return nil, s.fail(ctx, "read file", m.GetSandboxId(), err)
	}
	if len(b) > maxFileBytes {
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("%s is larger than %d MiB: use ReadFileStream", m.GetPath(), maxFileBytes>>20))
	}
	return connect.NewResponse(&v1.ReadFileResponse{Content: b}), nil
}

// WriteFileStream writes a file from a client stream: meta first, then
// chunks. Chunks are piped into envd's upload as they arrive, so memory does
// not grow with the file. If the stream breaks, envd drops the partial
// upload (an existing file stays as it was).
func (s *Server) WriteFileStream(ctx context.Context, stream *connect.ClientStream[v1.WriteFileStreamRequest]) (*connect.Response[v1.WriteFileResponse], error) {
	if !stream.Receive() {
		if err := stream.Err(); err != nil {
			return nil, s.fail(ctx, "write file stream", "", err)
		}
		return nil, invalid("empty stream: the first message must be meta")
	}
	meta := stream.Msg().GetMeta()
	if meta == nil {
		return nil, invalid("the first message must be meta")
	}
	id, path := meta.GetSandboxId(), meta.GetPath()
	if err := checkFile(id, path); err != nil {
		return nil, err
	}
	c, user, done, err := s.fileEnvd(ctx, id, path, accessWrite)
	if err != nil {
		return nil, err
	}
	defer done()

	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	uploaded := make(chan error, 1)
	go func() {
		err := c.Upload(uctx, path, user, pr)
		// Later writes fail instead of waiting for a reader that is gone.
		_ = pr.CloseWithError(err)
		uploaded <- err
	}()

	var sendErr error // the client's stream failed or broke the protocol
	var cut error     // the upload stopped reading before the stream ended
	for stream.Receive() {
		msg := stream.Msg()
		if msg.GetMeta() != nil {
			sendErr = invalid("meta sent twice")
			break
		}
		if _, err := pw.Write(msg.GetChunk()); err != nil {
			cut = err // the upload's own error says why
			break
		}
	}
	if sendErr == nil {
		sendErr = stream.Err()
	}
	if sendErr == nil && cut == nil {
		// A caller that went away right after ending its stream does not get
		// the file committed.
		sendErr = ctx.Err()
	}
	if sendErr != nil {
		_ = pw.CloseWithError(sendErr)
		cancel()
		<-uploaded
		return nil, s.fail(ctx, "write file stream", id, sendErr)
	}
	_ = pw.Close()
	if err := <-uploaded; err != nil {
		return nil, s.fail(ctx, "write file stream", id, err)
	}
	if cut != nil {
		return nil, s.fail(ctx, "write file stream", id, fmt.Errorf("envd stopped reading the upload: %w", cut))
	}
	entry, err := stat(ctx, c, path, user)
	if err != nil {
		return nil, s.fail(ctx, "write file stream", id, err)
	}
	return connect.NewResponse(&v1.WriteFileResponse{Entry: entry}), nil
}

// ReadFileStream streams a file in chunks of fileChunk bytes.
func (s *Server) ReadFileStream(ctx context.Context, req *connect.Request[v1.ReadFileRequest], stream *connect.ServerStream[v1.ReadFileStreamResponse]) error {
	m := req.Msg
	if err := checkFile(m.GetSandboxId(), m.GetPath()); err != nil {
		return err
	}
	c, user, done, err := s.fileEnvd(ctx, m.GetSandboxId(), m.GetPath(), accessRead)
	if err != nil {
		return err
	}
	defer done()
	rc, err := c.Download(ctx, m.GetPath(), user)
	if err != nil {
		return s.fail(ctx, "read file stream", m.GetSandboxId(), err)
	}
	defer rc.Close()
	buf := make([]byte, fileChunk)
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			if err := stream.Send(&v1.ReadFileStreamResponse{Chunk: buf[:n]}); err != nil {
				return s.fail(ctx, "read file stream", m.GetSandboxId(), err)
			}
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case err != nil:
			return s.fail(ctx, "read file stream", m.GetSandboxId(), err)
		}
	}
}

// ListDir lists a directory to depth levels (default 1).
func (s *Server) ListDir(ctx context.Context, req *connect.Request[v1.ListDirRequest]) (*connect.Response[v1.ListDirResponse], error) {
	m := req.Msg
	if err := checkFile(m.GetSandboxId(), m.GetPath()); err != nil {
		return nil, err
	}
	depth := m.GetDepth()
	if depth == 0 {
		depth = 1
	}
	c, user, done, err := s.fileEnvd(ctx, m.GetSandboxId(), m.GetPath(), accessRead)
	if err != nil {
		return nil, err
	}
	defer done()
	r := connect.NewRequest(&filesystem.ListDirRequest{Path: m.GetPath(), Depth: depth})
	asUser(r.Header(), user)
	res, err := c.FS.ListDir(ctx, r)
	if err != nil {
		return nil, s.fail(ctx, "list dir", m.GetSandboxId(), err)
	}
	out := &v1.ListDirResponse{Entries: make([]*v1.FileEntry, 0, len(res.Msg.GetEntries()))}
	for _, e := range res.Msg.GetEntries() {
		out.Entries = append(out.Entries, fileEntry(e))
	}
	return connect.NewResponse(out), nil
}

// MakeDir creates a directory and its parents; an existing path is
// AlreadyExists.
func (s *Server) MakeDir(ctx context.Context, req *connect.Request[v1.MakeDirRequest]) (*connect.Response[v1.MakeDirResponse], error) {
	m := req.Msg
	if err := checkFile(m.GetSandboxId(), m.GetPath()); err != nil {
		return nil, err
	}
	c, user, done, err := s.fileEnvd(ctx, m.GetSandboxId(), m.GetPath(), accessWrite)
	if err != nil {
		return nil, err
	}
	defer done()
	r := connect.NewRequest(&filesystem.MakeDirRequest{Path: m.GetPath()})
	asUser(r.Header(), user)
	res, err := c.FS.MakeDir(ctx, r)
	if err != nil {
		return nil, s.fail(ctx, "make dir", m.GetSandboxId(), err)
	}
	return connect.NewResponse(&v1.MakeDirResponse{Entry: fileEntry(res.Msg.GetEntry())}), nil
}

// RemovePath removes a file or a directory tree.
func (s *Server) RemovePath(ctx context.Context, req *connect.Request[v1.RemovePathRequest]) (*connect.Response[v1.RemovePathResponse], error) {
	m := req.Msg
	if err := checkFile(m.GetSandboxId(), m.GetPath()); err != nil {
		return nil, err
	}
	c, user, done, err := s.fileEnvd(ctx, m.GetSandboxId(), m.GetPath(), accessRemove)
	if err != nil {
		return nil, err
	}
	defer done()
	r := connect.NewRequest(&filesystem.RemoveRequest{Path: m.GetPath()})
	asUser(r.Header(), user)
	if _, err := c.FS.Remove(ctx, r); err != nil {
		return nil, s.fail(ctx, "remove path", m.GetSandboxId(), err)
	}
	return connect.NewResponse(&v1.RemovePathResponse{}), nil
}

func stat(ctx context.Context, c *envdclient.Client, path, user string) (*v1.FileEntry, error) {
	r := connect.NewRequest(&filesystem.StatRequest{Path: path})
	asUser(r.Header(), user)
	res, err := c.FS.Stat(ctx, r)
	if err != nil {
		return nil, err
	}
	return fileEntry(res.Msg.GetEntry()), nil
}

// fileEntry maps envd's EntryInfo. envd types a symlink by its target and
// sets symlink_target; here it is a "symlink". Anything else that is not a
// file or directory (a dangling symlink, a socket) is "unknown".
func fileEntry(e *filesystem.EntryInfo) *v1.FileEntry {
	if e == nil {
		return nil
	}
	typ := "unknown"
	switch {
	case e.GetType() == filesystem.FileType_FILE_TYPE_SYMLINK || e.GetSymlinkTarget() != "":
		typ = "symlink"
	case e.GetType() == filesystem.FileType_FILE_TYPE_FILE:
		typ = "file"
	case e.GetType() == filesystem.FileType_FILE_TYPE_DIRECTORY:
		typ = "dir"
	}
	return &v1.FileEntry{
		Name: e.GetName(), Path: e.GetPath(), Type: typ, Size: e.GetSize(), Mode: e.GetMode(),
		Permissions: e.GetPermissions(), Owner: e.GetOwner(), Group: e.GetGroup(),
		ModifiedAt: e.GetModifiedTime(), SymlinkTarget: e.GetSymlinkTarget(),
	}
}
