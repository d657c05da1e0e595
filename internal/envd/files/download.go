package files

import (
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wrenn/wrenn/internal/envd/auth"
	"github.com/wrenn/wrenn/internal/envd/httpjson"
)

// gzipWriters recycles compressors: each holds several hundred KiB of state.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// download streams one regular file.
func (h *Handler) download(w http.ResponseWriter, r *http.Request) {
	if err := auth.CheckFiles(r, h.defaults.Token(), "read", time.Now()); err != nil {
		httpjson.Error(w, http.StatusUnauthorized, "invalid access token or signature")
		return
	}
	u, err := h.requestUser(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	path, err := h.resolve(u, r.URL.Query().Get("path"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	f, info, err := openRegular(path)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer f.Close()

	hdr := w.Header()
	hdr.Set("Content-Disposition", contentDisposition(filepath.Base(path)))
	ctype := mime.TypeByExtension(filepath.Ext(path))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hdr.Set("Content-Type", ctype)
	hdr.Set("Vary", "Accept-Encoding")

	// Files whose size is unknown until read (/proc and /sys report 0 and
	// cannot seek) are streamed whole: ranges and validators need a size.
	sized := seekable(f, info)

	// Ranges and revalidation address the bytes on disk, so they are always
	// answered in identity coding; ServeContent implements both.
	if sized && conditional(r) {
		hdr.Set("Etag", etag(info))
		http.ServeContent(w, r, "", info.ModTime(), f)
		return
	}
	coding, ok := negotiate(r.Header.Values("Accept-Encoding"))
	if !ok {
		httpjson.Error(w, http.StatusNotAcceptable, "no acceptable content coding: only identity and gzip are available")
		return
	}
	if coding == codingIdentity && sized {
		hdr.Set("Etag", etag(info))
		http.ServeContent(w, r, "", info.ModTime(), f)
		return
	}
	hdr.Set("Last-Modified", info.ModTime().UTC().Format(http.TimeFormat))
	hdr.Del("Content-Length")
	if coding == codingIdentity {
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodHead {
			return
		}
		buf := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(buf)
		if _, err := io.CopyBuffer(w, onlyReader{f}, *buf); err != nil {
			h.log.DebugContext(r.Context(), "download aborted", "path", path, "error", err)
		}
		return
	}
	hdr.Set("Content-Encoding", codingGzip)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(w)
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if _, err := io.CopyBuffer(zw, onlyReader{f}, *buf); err != nil {
		h.log.DebugContext(r.Context(), "download aborted", "path", path, "error", err)
		return
	}
	if err := zw.Close(); err != nil {
		h.log.DebugContext(r.Context(), "download aborted", "path", path, "error", err)
	}
}

// seekable reports whether f has a size ServeContent can rely on: a
// non-empty file whose end can be sought. Pseudo-files (/proc, /sys) report
// size 0 whatever they hold, and some refuse to seek.
func seekable(f *os.File, info os.FileInfo) bool {
	if info.Size() == 0 {
		return false
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return false
	}
	_, err := f.Seek(0, io.SeekStart)
	return err == nil
}

// onlyReader hides the file's WriterTo so CopyBuffer uses the given buffer.
type onlyReader struct{ io.Reader }

// openRegular opens path for reading if it is a regular file. Non-blocking
// so that a FIFO swapped in after the check cannot hang the request.
func openRegular(path string) (*os.File, os.FileInfo, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, withStatus(http.StatusBadRequest, "%s is not a regular file", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	info, err = f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, withStatus(http.StatusBadRequest, "%s is not a regular file", path)
	}
	return f, info, nil
}

// conditional reports whether the request asks for a range or revalidates.
func conditional(r *http.Request) bool {
	for _, k := range []string{"Range", "If-Modified-Since", "If-None-Match", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if r.Header.Get(k) != "" {
			return true
		}
	}
	return false
}

func etag(info os.FileInfo) string {
	return fmt.Sprintf(`"%x-%x"`, info.ModTime().UnixNano(), info.Size())
}

// contentDisposition is inline; filename="name", with the RFC 2231 form for
// names a quoted string cannot carry.
func contentDisposition(name string) string {
	for _, c := range name {
		if c < 0x20 || c > 0x7e {
			return mime.FormatMediaType("inline", map[string]string{"filename": name})
		}
	}
	return `inline; filename="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(name) + `"`
}
