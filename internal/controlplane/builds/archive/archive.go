// Package archive validates build archives (tar, tar.gz, zip) before anything is written and re-encodes
// them as a plain, normalised tar stream for extraction in the build capsule (docs/security.md).
package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// Limits of a build archive.
const (
	MaxUpload   = 100 << 20 // bytes as uploaded (104,857,600)
	MaxEntries  = 100_000
	MaxExpanded = 1 << 30 // bytes of file content once decompressed
)

// Lowered by tests.
var (
	maxEntries  = MaxEntries
	maxExpanded = int64(MaxExpanded)
)

const (
	maxLinkTarget = 4096     // PATH_MAX
	maxHops       = 40       // symlinks followed while resolving one target, as the kernel's limit
	resolveBudget = 50 << 20 // path components walked while resolving all symlink targets of one archive
)

// Format is an archive format, detected from its content.
type Format string

// Supported formats.
const (
	Tar   Format = "tar"
	TarGz Format = "tar.gz"
	Zip   Format = "zip"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid archive")

// ErrUnsupported is returned for content that is none of the supported formats; it wraps ErrInvalid.
var ErrUnsupported error = &Error{Reason: "unsupported archive format", bare: true}

// ErrTooLarge is returned for an archive over MaxUpload bytes. It does not wrap ErrInvalid: the API
// answers it with 413.
var ErrTooLarge = errors.New("archive exceeds 100 MB limit")

// Error is a validation failure, naming the entry when there is one.
type Error struct {
	Entry  string // the entry's name as written in the archive, "" for the archive as a whole
	Reason string
	bare   bool // Reason is the whole message
}

func (e *Error) Error() string {
	switch {
	case e.bare:
		return e.Reason
	case e.Entry == "":
		return "invalid archive: " + e.Reason
	}
	return fmt.Sprintf("invalid archive: entry %q: %s", e.Entry, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *Error) Unwrap() error { return ErrInvalid }

// Detect reads the magic bytes: 1f 8b is a gzip-compressed tar, PK\x03\x04 a zip, "ustar" at offset 257 a
// plain tar; anything else is ErrUnsupported.
func Detect(r io.ReaderAt, size int64) (Format, error) {
	if size < 0 {
		return "", fmt.Errorf("read archive: negative size %d", size)
	}
	buf := make([]byte, min(size, 262))
	if n, err := r.ReadAt(buf, 0); n < len(buf) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("read archive: %w", err)
	}
	switch {
	case bytes.HasPrefix(buf, []byte{0x1f, 0x8b}):
		return TarGz, nil
	case bytes.HasPrefix(buf, []byte("PK\x03\x04")):
		return Zip, nil
	case len(buf) == 262 && string(buf[257:262]) == "ustar":
		return Tar, nil
	}
	return "", ErrUnsupported
}

// Check validates every entry without writing anything and returns the format. It rejects absolute paths,
// any ".." component, paths through a symlink of the archive, symlink and hard-link targets outside the
// archive root, entry types other than regular file, directory, symlink and hard link, more than
// MaxEntries entries and more than MaxExpanded bytes of decompressed content (counted as read, whatever
// the headers claim).
func Check(r io.ReaderAt, size int64) (Format, error) {
	return walk(r, size, nil)
}

// WriteTar re-encodes the archive as a plain tar of directories, regular files, symlinks and hard links
// with cleaned relative names, owner 0:0, no user or group names, permission bits only and no extended
// attributes. It validates the whole archive first and again while writing, failing with ErrInvalid on
// the rules of Check; errors writing to w are returned as they are.
func WriteTar(w io.Writer, r io.ReaderAt, size int64) error {
	if _, err := Check(r, size); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	_, err := walk(r, size, func(e *entry) error {
		hdr := &tar.Header{
			Typeflag: e.typ,
			Name:     e.name,
			Linkname: e.link,
			Mode:     e.mode,
			ModTime:  clampTime(e.modTime),
		}
		switch e.typ {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeReg:
			hdr.Size = e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar header %q: %w", e.name, err)
		}
		if e.typ != tar.TypeReg {
			return nil
		}
		n, err := io.Copy(tw, e.body)
		if err != nil {
			return err
		}
		if n != e.size {
			return &Error{Entry: e.raw, Reason: "content is shorter than its header says"}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write tar: %w", err)
	}
	return nil
}

// clampTime keeps modification times within what a ustar header holds, whole seconds.
func clampTime(t time.Time) time.Time {
	const maxUstar = 1<<33 - 1
	switch s := t.Unix(); {
	case t.IsZero() || s < 0:
		return time.Unix(0, 0)
	case s > maxUstar:
		return time.Unix(maxUstar, 0)
	}
	return time.Unix(t.Unix(), 0)
}

// entry is one archive member, normalised across formats.
type entry struct {
	raw     string // name as written, for errors
	name    string // cleaned relative name
	typ     byte   // tar.TypeDir, TypeReg, TypeSymlink or TypeLink
	mode    int64  // permission bits
	size    int64  // TypeReg: content length
	link    string // TypeSymlink: target as written; TypeLink: cleaned target
	modTime time.Time
	body    io.Reader // TypeReg: the content, counted against the expansion limit
}

// walk validates every entry and hands each to emit (when not nil) as it goes; the archive root itself
// is validated but not emitted.
func walk(r io.ReaderAt, size int64, emit func(*entry) error) (Format, error) {
	if size > MaxUpload {
		return "", ErrTooLarge
	}
	format, err := Detect(r, size)
	if err != nil {
		return "", err
	}
	v := newValidator()
	src := io.NewSectionReader(r, 0, size)
	switch format {
	case Tar:
		err = v.walkTar(src, emit)
	case TarGz:
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(src); err != nil {
			return "", &Error{Reason: "corrupt gzip stream: " + err.Error()}
		}
		// Headers are not content, but they are expanded bytes too: bound the whole stream.
		err = v.walkTar(&streamLimit{r: zr, left: 2*maxExpanded + 1<<20}, emit)
	case Zip:
		err = v.walkZip(r, size, emit)
	}
	if err != nil {
		return "", err
	}
	if err := v.finish(); err != nil {
		return "", err
	}
	return format, nil
}

// streamLimit fails a decompressed stream that grows past its bound.
type streamLimit struct {
	r    io.Reader
	left int64
}

func (s *streamLimit) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if s.left < 0 {
		return n, &Error{Reason: "decompressed stream exceeds the expansion limit"}
	}
	return n, err
}

func (v *validator) walkTar(r io.Reader, emit func(*entry) error) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return invalid("", "corrupt tar", err)
		}
		e := &entry{raw: hdr.Name, mode: hdr.Mode & 0o777, modTime: hdr.ModTime}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse: // sparse content reads back expanded
			e.typ, e.size, e.body = tar.TypeReg, hdr.Size, tr
		case tar.TypeDir:
			e.typ = tar.TypeDir
		case tar.TypeSymlink:
			e.typ, e.link = tar.TypeSymlink, hdr.Linkname
		case tar.TypeLink:
			e.typ, e.link = tar.TypeLink, hdr.Linkname
		case tar.TypeXGlobalHeader: // metadata only, such as the commit id git archive records
			if v.count++; v.count > maxEntries {
				return &Error{Reason: fmt.Sprintf("more than %d entries", maxEntries)}
			}
			continue
		default:
			return v.unsupported(hdr.Name, tarTypeName(hdr.Typeflag))
		}
		if err := v.handle(e, emit); err != nil {
			return err
		}
	}
}

func tarTypeName(t byte) string {
	switch t {
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	case tar.TypeCont:
		return "contiguous file"
	}
	return fmt.Sprintf("type %q", t)
}

func (v *validator) walkZip(r io.ReaderAt, size int64, emit func(*entry) error) error {
	zr, err := zip.NewReader(r, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // names are checked below, with the entry named
		return invalid("", "corrupt zip", err)
	}
	if len(zr.File) > maxEntries {
		return &Error{Reason: fmt.Sprintf("more than %d entries", maxEntries)}
	}
	for _, f := range zr.File {
		m := f.Mode()
		e := &entry{raw: f.Name, mode: int64(m.Perm()), modTime: f.Modified}
		switch {
		case m&fs.ModeSymlink != 0:
			target, err := v.readZipLink(f)
			if err != nil {
				return err
			}
			e.typ, e.link = tar.TypeSymlink, target
		case m.IsDir() || strings.HasSuffix(f.Name, "/"):
			e.typ = tar.TypeDir
		case m.IsRegular():
			if f.UncompressedSize64 > uint64(maxExpanded) {
				return v.tooBig(f.Name)
			}
			rc, err := f.Open()
			if err != nil {
				return invalid(f.Name, "cannot read content", err)
			}
			e.typ, e.size, e.body = tar.TypeReg, int64(f.UncompressedSize64), rc
			err = v.handle(e, emit)
			rc.Close()
			if err != nil {
				return err
			}
			continue
		default:
			return v.unsupported(f.Name, zipTypeName(m))
		}
		if err := v.handle(e, emit); err != nil {
			return err
		}
	}
	return nil
}

func zipTypeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "irregular file"
}

// readZipLink reads a zip symlink's target, its content.
func (v *validator) readZipLink(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", invalid(f.Name, "cannot read symlink target", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", invalid(f.Name, "cannot read symlink target", err)
	}
	if len(b) > maxLinkTarget {
		return "", &Error{Entry: f.Name, Reason: "symlink target is too long"}
	}
	if v.expanded += int64(len(b)); v.expanded > maxExpanded {
		return "", v.tooBig(f.Name)
	}
	return string(b), nil
}

// invalid wraps a format or read error as a validation error, keeping a validation error as it is.
func invalid(name, what string, err error) error {
	var ve *Error
	if errors.As(err, &ve) {
		if ve.Entry == "" && !ve.bare && name != "" {
			return &Error{Entry: name, Reason: ve.Reason}
		}
		return ve
	}
	return &Error{Entry: name, Reason: what + ": " + err.Error()}
}
