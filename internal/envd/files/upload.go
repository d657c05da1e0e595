package files

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wrenn/wrenn/internal/envd/auth"
	envdfs "github.com/wrenn/wrenn/internal/envd/fs"
	"github.com/wrenn/wrenn/internal/envd/httpjson"
	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// writtenFile is one element of the upload response (docs/envd.md).
type writtenFile struct {
	Path     string            `json:"path"`
	Name     string            `json:"name"`
	Type     string            `json:"type"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// upload writes the files of a multipart or octet-stream body.
func (h *Handler) upload(w http.ResponseWriter, r *http.Request) {
	if err := auth.CheckFiles(r, h.defaults.Token(), "write", time.Now()); err != nil {
		httpjson.Error(w, http.StatusUnauthorized, "invalid access token or signature")
		return
	}
	u, err := h.requestUser(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	body, err := decodedBody(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer body.Close()
	up := &uploader{h: h, user: u, metadata: metadataHeaders(r.Header), seen: map[string]bool{}}
	query := r.URL.Query()
	ctype, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err != nil:
		err = withStatus(http.StatusBadRequest, "invalid Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	case ctype == "multipart/form-data":
		err = up.multipart(body, params["boundary"], query.Get("path"))
	case ctype == "application/octet-stream":
		if query.Get("path") == "" {
			err = withStatus(http.StatusBadRequest, "the path query parameter is required for application/octet-stream uploads")
			break
		}
		err = up.file(query.Get("path"), body)
	default:
		err = withStatus(http.StatusBadRequest, "unsupported Content-Type %q: use multipart/form-data or application/octet-stream", ctype)
	}
	if err == nil && len(up.written) == 0 {
		err = withStatus(http.StatusBadRequest, "the request contains no part named file")
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, up.written)
}

// decodedBody undoes the request's Content-Encoding (identity or gzip).
func decodedBody(r *http.Request) (io.ReadCloser, error) {
	switch coding := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); coding {
	case "", codingIdentity:
		return r.Body, nil
	case codingGzip, "x-gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return nil, withStatus(http.StatusBadRequest, "read gzip request body: %v", err)
		}
		return zr, nil
	default:
		return nil, withStatus(http.StatusBadRequest, "unsupported Content-Encoding %q: only gzip is accepted", coding)
	}
}

// metadataHeaders collects X-Metadata-<key> headers: keys lower-cased, the
// first value of a repeated header wins, an empty key is ignored.
func metadataHeaders(h http.Header) map[string]string {
	const prefix = "x-metadata-"
	md := map[string]string{}
	for k, vs := range h {
		lk := strings.ToLower(k)
		if !strings.HasPrefix(lk, prefix) || len(lk) == len(prefix) || len(vs) == 0 {
			continue
		}
		if _, dup := md[lk[len(prefix):]]; !dup {
			md[lk[len(prefix):]] = vs[0]
		}
	}
	return md
}

// uploader writes the files of one request.
type uploader struct {
	h        *Handler
	user     *osuser.User
	metadata map[string]string
	seen     map[string]bool // resolved destinations written so far
	written  []writtenFile
}

// multipart writes every part named file. The destination is the path
// query parameter if given, else the part's raw filename parameter, which
// the SDK sets to the full path (Part.FileName would strip directories).
func (up *uploader) multipart(body io.Reader, boundary, queryPath string) error {
	if boundary == "" {
		return withStatus(http.StatusBadRequest, "multipart/form-data without boundary")
	}
	mr := multipart.NewReader(body, boundary)
	for {
		part, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return withStatus(http.StatusBadRequest, "read multipart body: %v", err)
		}
		_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		if err != nil || params["name"] != "file" {
			continue // not a file part; NextRawPart skips its body
		}
		dest := queryPath
		if dest == "" {
			dest = params["filename"]
		}
		if dest == "" {
			return withStatus(http.StatusBadRequest, "file part without filename and no path query parameter")
		}
		if err := up.file(dest, part); err != nil {
			return err
		}
	}
}

// file writes one upload to the request path dest.
func (up *uploader) file(dest string, src io.Reader) error {
	path, err := up.h.resolve(up.user, dest)
	if err != nil {
		return err
	}
	if up.seen[path] {
		return withStatus(http.StatusBadRequest, "%s is the destination of more than one file in this request", path)
	}
	up.seen[path] = true
	if err := writeFile(path, src, int(up.user.UID), int(up.user.GID), up.metadata); err != nil {
		return err
	}
	md, err := envdfs.ReadMetadata(path)
	if err != nil {
		return err
	}
	up.written = append(up.written, writtenFile{Path: path, Name: filepath.Base(path), Type: "file", Metadata: md})
	return nil
}

// writeFile stores src at path owned by uid:gid. A new file is written in
// place, so a directory watcher sees a create and writes of path itself,
// and is removed again if the upload fails. An existing regular file is
// replaced through a hidden temporary file renamed over it, so a failed
// upload never damages it (watches report the replacement as a write). An
// existing symlink is written through, as the reference envd does.
func writeFile(path string, src io.Reader, uid, gid int, md map[string]string) error {
	if info, err := os.Stat(path); err == nil && info.IsDir() {
		return withStatus(http.StatusBadRequest, "%s is a directory", path)
	}
	if _, err := envdfs.MkdirAll(filepath.Dir(path), uid, gid); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return withStatus(http.StatusBadRequest, "a parent of %s is not a directory", path)
		}
		return fmt.Errorf("create parents of %s: %w", path, err)
	}
	old, err := os.Lstat(path)
	switch {
	case err == nil && old.Mode()&fs.ModeSymlink != 0:
		return writeInPlace(path, src, uid, gid, md)
	case err == nil && !old.Mode().IsRegular():
		return withStatus(http.StatusBadRequest, "%s exists and is not a regular file", path)
	case err == nil:
		return replaceFile(path, old, src, uid, gid, md)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := writeInPlace(path, src, uid, gid, md); err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// replaceFile writes src to a temporary file beside the existing regular
// file path and renames it over path, keeping path's mode, and its metadata
// when md is not empty.
func replaceFile(path string, old fs.FileInfo, src io.Reader, uid, gid int, md map[string]string) error {
	var (
		tmp string
		f   *os.File
		err error
	)
	for range 10 {
		if tmp, err = envdfs.UploadTempName(path); err != nil {
			return err
		}
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, old.Mode().Perm())
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(old.Mode().Perm()); err != nil {
		return err
	}
	// With metadata, the keys it does not mention keep their values; without
	// any, the new content starts without metadata (docs/envd.md).
	if len(md) > 0 {
		if err := envdfs.CopyMetadata(path, tmp); err != nil {
			return err
		}
	}
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", tmp, err)
	}
	if err := copyBody(f, src); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := envdfs.SetMetadata(tmp, md); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	committed = true
	return nil
}

// writeInPlace truncates and writes path (or the file a symlink at path
// points at), creating it with mode 0666 minus the umask when missing. Its
// metadata: md's keys set, others kept; no md: none.
func writeInPlace(path string, src io.Reader, uid, gid int, md map[string]string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
		return withStatus(http.StatusBadRequest, "%s does not lead to a regular file", path)
	}
	if err := f.Chown(uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	if err := copyBody(f, src); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if len(md) == 0 {
		return envdfs.ClearMetadata(path)
	}
	return envdfs.SetMetadata(path, md)
}

// copyBody copies src to f, answering 400 for a broken request body and
// the OS error (507 when the disk is full) for a failed write.
func copyBody(f *os.File, src io.Reader) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := f.Write(buf[:n]); err != nil {
				return fmt.Errorf("write %s: %w", f.Name(), err)
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return withStatus(http.StatusBadRequest, "read request body: %v", rerr)
		}
	}
}
