package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"os"

	"connectrpc.com/connect"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/apierr"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/httpapi"
)

const (
	// maxPathField bounds the multipart path field.
	maxPathField = 4096
	// multipartSlack is what a files/write body may carry besides the file: the path field, part
	// headers and boundaries.
	multipartSlack = 1 << 20
)

// FileEntry is a file-browser entry (docs/api.md).
type FileEntry struct {
	Name          string `json:"name"`
	Path          string `json:"path"`
	Type          string `json:"type"` // file, directory, symlink, unknown
	Size          int64  `json:"size"`
	Mode          uint32 `json:"mode"`
	Permissions   string `json:"permissions"`
	Owner         string `json:"owner"`
	Group         string `json:"group"`
	ModifiedAt    int64  `json:"modified_at"`
	SymlinkTarget string `json:"symlink_target,omitempty"`
}

func fileEntryView(e *hav1.FileEntry) FileEntry {
	typ := "unknown"
	switch e.GetType() {
	case "file":
		typ = "file"
	case "dir", "directory":
		typ = "directory"
	case "symlink":
		typ = "symlink"
	}
	v := FileEntry{
		Name: e.GetName(), Path: e.GetPath(), Type: typ, Size: e.GetSize(), Mode: e.GetMode(),
		Permissions: e.GetPermissions(), Owner: e.GetOwner(), Group: e.GetGroup(), SymlinkTarget: e.GetSymlinkTarget(),
	}
	if e.GetModifiedAt() != nil {
		v.ModifiedAt = e.GetModifiedAt().AsTime().Unix()
	}
	return v
}

// pathRequest is the body of files/read, stream/read, mkdir and remove.
type pathRequest struct {
	Path string `json:"path"`
}

// listRequest is the body of files/list.
type listRequest struct {
	Path  string `json:"path"`
	Depth int64  `json:"depth"`
}

var errPathRequired = apierr.InvalidRequest("path is required")

// decodePath decodes a {path} body and resolves the capsule.
func (s *Service) decodePath(r *http.Request, sc scope) (capsules.Target, string, error) {
	var q pathRequest
	if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &q); err != nil {
		return capsules.Target{}, "", err
	}
	if q.Path == "" {
		return capsules.Target{}, "", errPathRequired
	}
	t, err := s.target(r.Context(), sc, httpapi.Identity(r), r.PathValue("id"))
	return t, q.Path, err
}

// readFile serves POST …/files/read: the whole file as application/octet-stream.
func (s *Service) readFile(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.download(w, r, sc, false) }
}

// streamRead serves POST …/files/stream/read: the file chunked, flushed per 64 KiB chunk.
func (s *Service) streamRead(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.download(w, r, sc, true) }
}

// download copies a file from the agent's chunk stream to the response, one chunk in memory at a
// time. Errors before the first chunk are JSON answers; a failure later aborts the response, so the
// client sees a truncated body rather than a short file.
func (s *Service) download(w http.ResponseWriter, r *http.Request, sc scope, flush bool) {
	t, path, err := s.decodePath(r, sc)
	if err != nil {
		apierr.Write(w, r, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	st, err := t.Agent.ReadFileStream(ctx, connect.NewRequest(&hav1.ReadFileRequest{SandboxId: t.PublicID, Path: path}))
	if err != nil {
		apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
		return
	}
	defer st.Close()
	first := st.Receive()
	if !first {
		if err := st.Err(); err != nil {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
			return
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for ok := first; ok; ok = st.Receive() {
		if _, err := w.Write(st.Msg().GetChunk()); err != nil {
			return // the client went away
		}
		if flush {
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
	if err := st.Err(); err != nil {
		s.log.WarnContext(ctx, "file download failed after the response started",
			"capsule_id", t.PublicID, "path", path, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// writeFile serves POST …/files/write: multipart with a path field and a file part of at most
// MaxWriteBytes, in either order.
func (s *Service) writeFile(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.upload(w, r, sc, false); err != nil {
			apierr.Write(w, r, err)
			return
		}
		httpapi.NoContent(w)
	}
}

// streamWrite serves POST …/files/stream/write: multipart with the path field before the file part,
// no size cap.
func (s *Service) streamWrite(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.upload(w, r, sc, true); err != nil {
			apierr.Write(w, r, err)
			return
		}
		httpapi.NoContent(w)
	}
}

func tooLarge() error {
	return apierr.TooLarge(fmt.Sprintf("file exceeds the %s limit of files/write: use files/stream/write", apierr.FormatBytes(MaxWriteBytes)))
}

// upload reads a multipart upload and streams its file part to the capsule in 64 KiB chunks. For
// files/write (!streamed) the file may come before the path field (it is then spooled to a temporary
// file) and may not exceed MaxWriteBytes; for files/stream/write the path must come first.
//
// The capsule is resolved (docs/api.md) before any of the body is read: another team's capsule is a
// 404 however large the body, and nothing is spooled for it (docs/security.md).
func (s *Service) upload(w http.ResponseWriter, r *http.Request, sc scope, streamed bool) error {
	t, err := s.target(r.Context(), sc, httpapi.Identity(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	limit := int64(-1)
	if !streamed {
		limit = MaxWriteBytes
		if r.ContentLength > MaxWriteBytes+multipartSlack {
			return tooLarge()
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxWriteBytes+multipartSlack)
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return apierr.InvalidRequest("body must be multipart/form-data with a path field and a file part")
	}
	var (
		path    string
		spooled *os.File
	)
	defer func() {
		if spooled != nil {
			_ = spooled.Close()
			_ = os.Remove(spooled.Name())
		}
	}()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return bodyError(err)
		}
		switch part.FormName() {
		case "path":
			if path != "" {
				continue
			}
			b, err := io.ReadAll(io.LimitReader(part, maxPathField+1))
			if err != nil {
				return bodyError(err)
			}
			if len(b) > maxPathField {
				return apierr.InvalidRequestf("path is longer than %d bytes", maxPathField)
			}
			if path = string(b); path == "" {
				return errPathRequired
			}
			if spooled != nil {
				if _, err := spooled.Seek(0, io.SeekStart); err != nil {
					return apierr.Internal(fmt.Errorf("rewind spooled upload: %w", err))
				}
				return s.sendFile(r, t, path, spooled, -1)
			}
		case "file":
			if path != "" {
				return s.sendFile(r, t, path, part, limit)
			}
			if streamed {
				return apierr.InvalidRequest("path is required before the file part: send the path field first")
			}
			if spooled != nil {
				continue
			}
			if spooled, err = spool(part, limit); err != nil {
				return err
			}
		}
	}
	if path == "" {
		return errPathRequired
	}
	return apierr.InvalidRequest("file part is required")
}

// spool copies a file part that arrived before the path into a temporary file.
func spool(part *multipart.Part, limit int64) (*os.File, error) {
	f, err := os.CreateTemp("", "wrenn-upload-*")
	if err != nil {
		return nil, apierr.Internal(fmt.Errorf("spool upload: %w", err))
	}
	n, err := io.Copy(f, io.LimitReader(part, limit+1))
	if err == nil && n > limit {
		err = tooLarge()
	}
	if err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, apierr.Internal(fmt.Errorf("spool upload: %w", err))
		}
		return nil, bodyError(err)
	}
	return f, nil
}

// bodyError maps a failure to read the request body: 413 past a limit, else 400.
func bodyError(err error) error {
	var mb *http.MaxBytesError
	var e *apierr.Error
	switch {
	case errors.As(err, &mb):
		return tooLarge()
	case errors.As(err, &e):
		return e
	}
	return apierr.InvalidRequestf("could not read the multipart body: %v", err)
}

// sendFile streams src to path of capsule t with WriteFileStream, in chunkSize pieces. With
// limit ≥ 0 a longer src fails with 413.
func (s *Service) sendFile(r *http.Request, t capsules.Target, path string, src io.Reader, limit int64) error {
	st := t.Agent.WriteFileStream(r.Context())
	meta := &hav1.WriteFileStreamRequest{Part: &hav1.WriteFileStreamRequest_Meta{
		Meta: &hav1.WriteFileMeta{SandboxId: t.PublicID, Path: path},
	}}
	sendErr := st.Send(meta)
	if limit < 0 {
		limit = math.MaxInt64
	}
	buf := make([]byte, chunkSize)
	var total int64
	for sendErr == nil {
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			if total += int64(n); total > limit {
				abandon(st, meta)
				return tooLarge()
			}
			sendErr = st.Send(&hav1.WriteFileStreamRequest{Part: &hav1.WriteFileStreamRequest_Chunk{Chunk: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			abandon(st, meta)
			return bodyError(rerr)
		}
	}
	// A failed Send means the agent answered early; its answer says why.
	if _, err := st.CloseAndReceive(); err != nil {
		return apierr.FromAgent(r.Context(), err)
	}
	if sendErr != nil && !errors.Is(sendErr, io.EOF) {
		return apierr.FromAgent(r.Context(), sendErr)
	}
	return nil
}

// abandon ends an upload the client broke off so that the agent drops it: a second meta message
// breaks the stream's protocol (meta first, then chunks only), which the agent rejects and so
// discards the partial file (an existing file stays as it was). Merely closing the stream would
// commit what was sent as the whole file, and cancelling it leaves the request body unfinished.
func abandon(st *connect.ClientStreamForClient[hav1.WriteFileStreamRequest, hav1.WriteFileResponse], meta *hav1.WriteFileStreamRequest) {
	_ = st.Send(meta)
	_, _ = st.CloseAndReceive()
}

// listDir serves POST …/files/list.
func (s *Service) listDir(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var q listRequest
		if err := apierr.DecodeJSON(r, apierr.DefaultBodyLimit, &q); err != nil {
			apierr.Write(w, r, err)
			return
		}
		switch {
		case q.Path == "":
			apierr.Write(w, r, errPathRequired)
			return
		case q.Depth < 0:
			apierr.Write(w, r, apierr.InvalidRequest("depth must not be negative"))
			return
		case q.Depth > math.MaxUint32:
			apierr.Write(w, r, apierr.InvalidRequestf("depth must be at most %d", uint32(math.MaxUint32)))
			return
		}
		depth := uint32(q.Depth)
		if depth == 0 {
			depth = 1
		}
		t, err := s.target(r.Context(), sc, httpapi.Identity(r), r.PathValue("id"))
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		res, err := t.Agent.ListDir(r.Context(), connect.NewRequest(&hav1.ListDirRequest{SandboxId: t.PublicID, Path: q.Path, Depth: depth}))
		if err != nil {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
			return
		}
		out := make([]FileEntry, 0, len(res.Msg.GetEntries()))
		for _, e := range res.Msg.GetEntries() {
			out = append(out, fileEntryView(e))
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"entries": out})
	}
}

// makeDir serves POST …/files/mkdir: 200 {"entry"}; 409 conflict when the directory exists, 400 when
// a file is in the way.
func (s *Service) makeDir(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, path, err := s.decodePath(r, sc)
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		res, err := t.Agent.MakeDir(r.Context(), connect.NewRequest(&hav1.MakeDirRequest{SandboxId: t.PublicID, Path: path}))
		if err != nil {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"entry": fileEntryView(res.Msg.GetEntry())})
	}
}

// removePath serves POST …/files/remove: recursive, 204 also when the path is absent (envd removes
// absent paths without error, so a not found of the agent is the capsule's).
func (s *Service) removePath(sc scope) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, path, err := s.decodePath(r, sc)
		if err != nil {
			apierr.Write(w, r, err)
			return
		}
		_, err = t.Agent.RemovePath(r.Context(), connect.NewRequest(&hav1.RemovePathRequest{SandboxId: t.PublicID, Path: path}))
		if err != nil {
			apierr.Write(w, r, apierr.FromAgent(r.Context(), err))
			return
		}
		httpapi.NoContent(w)
	}
}
