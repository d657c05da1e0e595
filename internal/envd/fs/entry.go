package fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wrenn/wrenn/api/envd/filesystem"
	"github.com/wrenn/wrenn/internal/envd/osuser"
)

// Entry describes path as the protocol's EntryInfo (docs/envd.md): lstat-based, with
// a symlink reported as the type and permission bits of its final target.
// path is reported as given; it should be absolute and clean.
func Entry(path string) (*filesystem.EntryInfo, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	return entryFromInfo(path, info), nil
}

func entryFromInfo(path string, info fs.FileInfo) *filesystem.EntryInfo {
	e := &filesystem.EntryInfo{
		Name:         filepath.Base(path),
		Path:         path,
		Type:         fileType(info.Mode()),
		Size:         info.Size(),
		Mode:         uint32(info.Mode().Perm()),
		Permissions:  info.Mode().String(),
		ModifiedTime: timestamppb.New(info.ModTime()),
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		e.Owner = osuser.UserName(st.Uid)
		e.Group = osuser.GroupName(st.Gid)
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		// The reference never reports FILE_TYPE_SYMLINK: a link looks like
		// what it points at, and a dangling one has no type.
		e.Type = filesystem.FileType_FILE_TYPE_UNSPECIFIED
		e.Mode = 0
		if target, err := os.Stat(path); err == nil {
			e.Type = fileType(target.Mode())
			e.Mode = uint32(target.Mode().Perm())
			if resolved, err := filepath.EvalSymlinks(path); err == nil {
				if abs, err := filepath.Abs(resolved); err == nil {
					e.SymlinkTarget = &abs
				}
			}
		}
	}
	if md, err := ReadMetadata(path); err == nil && len(md) > 0 {
		e.Metadata = md
	}
	return e
}

func fileType(m fs.FileMode) filesystem.FileType {
	switch {
	case m.IsRegular():
		return filesystem.FileType_FILE_TYPE_FILE
	case m.IsDir():
		return filesystem.FileType_FILE_TYPE_DIRECTORY
	default:
		return filesystem.FileType_FILE_TYPE_UNSPECIFIED
	}
}

// metadataPrefix is the extended-attribute namespace that holds file
// metadata set through POST /files (docs/envd.md).
const metadataPrefix = "user."

// ReadMetadata returns the user metadata of path (its user.* extended
// attributes, following symlinks). A filesystem without xattr support has
// none.
func ReadMetadata(path string) (map[string]string, error) {
	names, err := listxattr(path)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, fmt.Errorf("list metadata of %s: %w", path, err)
	}
	var md map[string]string
	for _, name := range names {
		key, ok := strings.CutPrefix(name, metadataPrefix)
		if !ok || key == "" {
			continue
		}
		val, err := getxattr(path, name)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue // removed since the listing
			}
			return nil, fmt.Errorf("read metadata %q of %s: %w", key, path, err)
		}
		if md == nil {
			md = map[string]string{}
		}
		md[key] = string(val)
	}
	return md, nil
}

// SetMetadata stores md as user metadata of path; keys not in md keep their
// values. Keys are used as given (callers lower-case them).
func SetMetadata(path string, md map[string]string) error {
	for k, v := range md {
		if err := unix.Setxattr(path, metadataPrefix+k, []byte(v), 0); err != nil {
			return fmt.Errorf("set metadata %q on %s: %w", k, path, err)
		}
	}
	return nil
}

// ClearMetadata removes every user metadata key of path (following
// symlinks). A filesystem without xattr support has none to remove.
func ClearMetadata(path string) error {
	names, err := listxattr(path)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return fmt.Errorf("list metadata of %s: %w", path, err)
	}
	for _, name := range names {
		if !strings.HasPrefix(name, metadataPrefix) {
			continue
		}
		if err := unix.Removexattr(path, name); err != nil && !errors.Is(err, unix.ENODATA) {
			return fmt.Errorf("remove metadata %q of %s: %w", strings.TrimPrefix(name, metadataPrefix), path, err)
		}
	}
	return nil
}

// CopyMetadata copies the user metadata of src onto dst, so that replacing
// a file keeps the metadata that an upload does not mention.
func CopyMetadata(src, dst string) error {
	md, err := ReadMetadata(src)
	if err != nil {
		return err
	}
	return SetMetadata(dst, md)
}

// listxattr grows its buffer until the name list fits.
func listxattr(path string) ([]string, error) {
	size := 256
	for {
		buf := make([]byte, size)
		n, err := unix.Listxattr(path, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			size *= 4
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func getxattr(path, name string) ([]byte, error) {
	size := 256
	for {
		buf := make([]byte, size)
		n, err := unix.Getxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) && size < 1<<20 {
			size *= 4
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
