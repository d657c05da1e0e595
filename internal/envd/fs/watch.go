package fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"connectrpc.com/connect"
	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/api/envd/filesystem"
)

// watch is one fsnotify watcher on a directory (and, when recursive, on
// every directory below it). Its methods are called by one goroutine, the
// owner that reads fw's channels.
type watch struct {
	fw           *fsnotify.Watcher
	root         string
	recursive    bool
	includeEntry bool
	// scanned holds paths already reported as created by a scan of a new
	// directory, so the kernel's own create event for them is not reported
	// twice. An entry is forgotten at the first event for its path.
	scanned map[string]struct{}
	// replacing holds paths an upload's temporary file was just renamed
	// onto; the create the kernel reports for them is a write.
	replacing map[string]struct{}
}

// maxScanned bounds watch.scanned; entries for files whose kernel event
// never comes would otherwise pile up.
const maxScanned = 4096

// watchOptions are the shared options of WatchDir and CreateWatcher.
type watchOptions struct {
	path               string
	recursive          bool
	includeEntry       bool
	allowNetworkMounts bool
}

// newWatch checks the directory and installs the watches, so every change
// after it returns is reported.
func newWatch(o watchOptions) (*watch, error) {
	info, err := os.Stat(o.path)
	if err != nil {
		return nil, connectErr(err, "watch %s", o.path)
	}
	if !info.IsDir() {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("path %s is not a directory", o.path))
	}
	if !o.allowNetworkMounts {
		var sfs unix.Statfs_t
		if err := unix.Statfs(o.path, &sfs); err != nil {
			return nil, connectErr(err, "statfs %s", o.path)
		}
		if name, ok := networkFS(int64(sfs.Type)); ok {
			return nil, connect.NewError(connect.CodeInvalidArgument,
				fmt.Errorf("%s is on a network filesystem (%s); set allowNetworkMounts to watch it anyway", o.path, name))
		}
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, connectErr(err, "create watcher")
	}
	w := &watch{fw: fw, root: o.path, recursive: o.recursive, includeEntry: o.includeEntry, scanned: map[string]struct{}{}, replacing: map[string]struct{}{}}
	if err := w.add(o.path); err != nil {
		_ = fw.Close()
		return nil, connectErr(err, "watch %s", o.path)
	}
	return w, nil
}

// networkFS names the statfs magic numbers of filesystems whose remote
// changes inotify cannot see.
func networkFS(magic int64) (string, bool) {
	switch magic {
	case unix.NFS_SUPER_MAGIC:
		return "nfs", true
	case unix.CIFS_SUPER_MAGIC:
		return "cifs", true
	case unix.SMB_SUPER_MAGIC, unix.SMB2_SUPER_MAGIC:
		return "smb", true
	case unix.FUSE_SUPER_MAGIC:
		return "fuse", true
	}
	return "", false
}

// add watches dir, and when recursive every directory below it (not
// following symlinks).
func (w *watch) add(dir string) error {
	if !w.recursive {
		return w.fw.Add(dir)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if err := w.fw.Add(p); err != nil && !(errors.Is(err, fs.ErrNotExist) && p != dir) {
			return err
		}
		return nil
	})
}

// close releases the kernel watches and ends fw's channels.
func (w *watch) close() { _ = w.fw.Close() }

// opOrder is the order in which the operations of one kernel event are
// reported (docs/envd.md).
var opOrder = []struct {
	op fsnotify.Op
	t  filesystem.EventType
}{
	{fsnotify.Create, filesystem.EventType_EVENT_TYPE_CREATE},
	{fsnotify.Rename, filesystem.EventType_EVENT_TYPE_RENAME},
	{fsnotify.Chmod, filesystem.EventType_EVENT_TYPE_CHMOD},
	{fsnotify.Write, filesystem.EventType_EVENT_TYPE_WRITE},
	{fsnotify.Remove, filesystem.EventType_EVENT_TYPE_REMOVE},
}

// handle turns one fsnotify event into protocol events and, for a new
// directory of a recursive watch, watches it and reports what was created
// inside it before the watch was in place.
func (w *watch) handle(ev fsnotify.Event) []*filesystem.FilesystemEvent {
	rel, err := filepath.Rel(w.root, ev.Name)
	if err != nil || rel == "." || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
		return nil // the watched directory itself
	}
	if target, ok := uploadTarget(filepath.Base(ev.Name)); ok {
		if ev.Op.Has(fsnotify.Rename) {
			if len(w.replacing) >= maxScanned {
				clear(w.replacing)
			}
			w.replacing[filepath.Join(filepath.Dir(ev.Name), target)] = struct{}{}
		}
		return nil
	}
	if _, ok := w.replacing[ev.Name]; ok {
		delete(w.replacing, ev.Name)
		if ev.Op.Has(fsnotify.Create) {
			ev.Op = ev.Op&^fsnotify.Create | fsnotify.Write
		}
	}
	var out []*filesystem.FilesystemEvent
	if _, dup := w.scanned[ev.Name]; dup {
		delete(w.scanned, ev.Name)
		if ev.Op == fsnotify.Create {
			return nil
		}
		ev.Op &^= fsnotify.Create
	}
	for _, o := range opOrder {
		if ev.Op.Has(o.op) {
			out = append(out, w.event(ev.Name, rel, o.t))
		}
	}
	if w.recursive && ev.Op.Has(fsnotify.Create) {
		if info, err := os.Lstat(ev.Name); err == nil && info.IsDir() {
			out = append(out, w.addNew(ev.Name)...)
		}
	}
	return out
}

// addNew watches a directory created under a recursive watch and reports
// its contents as created: they may have appeared before the watch did.
func (w *watch) addNew(dir string) []*filesystem.FilesystemEvent {
	if err := w.add(dir); err != nil {
		return nil // gone again, or unwatchable; its parent still reports it
	}
	var out []*filesystem.FilesystemEvent
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		rel, rerr := filepath.Rel(w.root, p)
		if rerr != nil {
			return nil
		}
		if len(w.scanned) >= maxScanned {
			clear(w.scanned) // a stray duplicate is better than unbounded growth
		}
		w.scanned[p] = struct{}{}
		out = append(out, w.event(p, rel, filesystem.EventType_EVENT_TYPE_CREATE))
		return nil
	})
	return out
}

func (w *watch) event(abs, rel string, t filesystem.EventType) *filesystem.FilesystemEvent {
	ev := &filesystem.FilesystemEvent{Name: rel, Type: t}
	if w.includeEntry {
		if e, err := Entry(abs); err == nil {
			ev.Entry = e
		}
	}
	return ev
}
