package fs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/fsnotify/fsnotify"

	"github.com/wrenn/wrenn/api/envd/filesystem"
	"golang.org/x/sys/unix"
)

// watchStream opens WatchDir and returns a channel of its messages; the
// first one must be the start event.
func watchStream(t *testing.T, e *env, ctx context.Context, req *filesystem.WatchDirRequest, hdr map[string]string) (<-chan *filesystem.WatchDirResponse, func() error) {
	t.Helper()
	r := connect.NewRequest(req)
	for k, v := range hdr {
		r.Header().Set(k, v)
	}
	stream, err := e.client.WatchDir(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("no start event: %v", stream.Err())
	}
	if stream.Msg().GetStart() == nil {
		t.Fatalf("first message %v, want start", stream.Msg())
	}
	ch := make(chan *filesystem.WatchDirResponse, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for stream.Receive() {
			ch <- stream.Msg()
		}
	}()
	t.Cleanup(func() {
		_ = stream.Close()
		<-done
	})
	return ch, func() error { <-done; return stream.Err() }
}

// nextFS returns the next filesystem event, skipping keepalives.
func nextFS(t *testing.T, ch <-chan *filesystem.WatchDirResponse) *filesystem.FilesystemEvent {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if fe := m.GetFilesystem(); fe != nil {
				return fe
			}
		case <-timeout:
			t.Fatal("no event within 30s")
		}
	}
}

// waitFor reads events until one matches, returning those seen.
func waitFor(t *testing.T, ch <-chan *filesystem.WatchDirResponse, name string, typ filesystem.EventType) []*filesystem.FilesystemEvent {
	t.Helper()
	var seen []*filesystem.FilesystemEvent
	for {
		fe := nextFS(t, ch)
		seen = append(seen, fe)
		if fe.GetName() == name && fe.GetType() == typ {
			return seen
		}
	}
}

func TestWatchDirRecursive(t *testing.T) {
	forCodecs(t, func(t *testing.T, e *env) {
		dir := t.TempDir()
		ch, _ := watchStream(t, e, ctxT(t), &filesystem.WatchDirRequest{Path: dir, Recursive: true, IncludeEntry: true}, nil)

		must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
		if fe := nextFS(t, ch); fe.GetName() != "sub" || fe.GetType() != filesystem.EventType_EVENT_TYPE_CREATE ||
			fe.GetEntry().GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY {
			t.Fatalf("got %v, want create of sub with a directory entry", fe)
		}
		must(t, os.WriteFile(filepath.Join(dir, "sub", "a.txt"), []byte("hi"), 0o644))
		create, write := nextFS(t, ch), nextFS(t, ch)
		if create.GetName() != "sub/a.txt" || create.GetType() != filesystem.EventType_EVENT_TYPE_CREATE || create.GetEntry() == nil {
			t.Fatalf("got %v, want create of sub/a.txt with entry", create)
		}
		if write.GetName() != "sub/a.txt" || write.GetType() != filesystem.EventType_EVENT_TYPE_WRITE ||
			write.GetEntry().GetPath() != filepath.Join(dir, "sub", "a.txt") {
			t.Fatalf("got %v, want write of sub/a.txt with entry", write)
		}

		// A tree made faster than watches can be added is still reported.
		writeFile(t, filepath.Join(dir, "x", "y", "z.txt"), "z")
		waitFor(t, ch, "x/y/z.txt", filesystem.EventType_EVENT_TYPE_CREATE)

		must(t, os.Rename(filepath.Join(dir, "sub", "a.txt"), filepath.Join(dir, "sub", "b.txt")))
		waitFor(t, ch, "sub/a.txt", filesystem.EventType_EVENT_TYPE_RENAME)
		waitFor(t, ch, "sub/b.txt", filesystem.EventType_EVENT_TYPE_CREATE)
		must(t, os.Chmod(filepath.Join(dir, "sub", "b.txt"), 0o600))
		waitFor(t, ch, "sub/b.txt", filesystem.EventType_EVENT_TYPE_CHMOD)
		must(t, os.Remove(filepath.Join(dir, "sub", "b.txt")))
		rm := waitFor(t, ch, "sub/b.txt", filesystem.EventType_EVENT_TYPE_REMOVE)
		if last := rm[len(rm)-1]; last.Entry != nil {
			t.Fatalf("remove event carries an entry of a gone path: %v", last)
		}
	})
}

func TestWatchDirNonRecursive(t *testing.T) {
	e := newEnv(t, true)
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	ch, _ := watchStream(t, e, ctxT(t), &filesystem.WatchDirRequest{Path: dir}, nil)
	must(t, os.WriteFile(filepath.Join(dir, "sub", "hidden.txt"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "top.txt"), []byte("x"), 0o644))
	fe := nextFS(t, ch)
	if fe.GetName() != "top.txt" || fe.GetType() != filesystem.EventType_EVENT_TYPE_CREATE || fe.Entry != nil {
		t.Fatalf("got %v, want create of top.txt without entry (change in sub must not be seen)", fe)
	}
}

func TestWatchDirErrors(t *testing.T) {
	e := newEnv(t, false)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "f"), "x")
	tests := []struct {
		name, user, path string
		code             connect.Code
	}{
		{"missing", "", filepath.Join(dir, "nope"), connect.CodeNotFound},
		{"file", "", filepath.Join(dir, "f"), connect.CodeInvalidArgument},
		{"unknown user", "mallory", dir, connect.CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := connect.NewRequest(&filesystem.WatchDirRequest{Path: tt.path})
			if tt.user != "" {
				req = as(tt.user, req)
			}
			stream, err := e.client.WatchDir(ctxT(t), req)
			if err == nil {
				for stream.Receive() {
					t.Errorf("unexpected message %v", stream.Msg())
				}
				err = stream.Err()
				_ = stream.Close()
			}
			wantCode(t, err, tt.code)
		})
		t.Run("poll "+tt.name, func(t *testing.T) {
			req := connect.NewRequest(&filesystem.CreateWatcherRequest{Path: tt.path})
			if tt.user != "" {
				req = as(tt.user, req)
			}
			_, err := e.client.CreateWatcher(ctxT(t), req)
			wantCode(t, err, tt.code)
		})
	}
}

func TestWatchDirKeepaliveAndDeadline(t *testing.T) {
	e := newEnv(t, true)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(ctxT(t), 2500*time.Millisecond)
	defer cancel()
	start := time.Now()
	ch, wait := watchStream(t, e, ctx, &filesystem.WatchDirRequest{Path: dir}, map[string]string{"Keepalive-Ping-Interval": "1"})
	keepalives := 0
	for m := range ch {
		if m.GetKeepalive() != nil {
			keepalives++
		}
	}
	err := wait()
	// Keepalive n is due n s after the call began: a slow machine can only
	// lower the count for the time the stream took.
	if took := time.Since(start); keepalives < 1 || keepalives > int(took/time.Second) {
		t.Fatalf("%d keepalives in %v at a 1 s interval", keepalives, took)
	}
	wantCode(t, err, connect.CodeDeadlineExceeded)
}

func TestWatchDirEndsOnClose(t *testing.T) {
	e := newEnv(t, false)
	ch, wait := watchStream(t, e, ctxT(t), &filesystem.WatchDirRequest{Path: t.TempDir()}, nil)
	e.svc.Close()
	for range ch {
	}
	wantCode(t, wait(), connect.CodeUnavailable)
}

func TestHandleOrder(t *testing.T) {
	w := &watch{root: "/w", recursive: false, scanned: map[string]struct{}{}}
	all := fsnotify.Remove | fsnotify.Write | fsnotify.Chmod | fsnotify.Rename | fsnotify.Create
	var got []filesystem.EventType
	for _, e := range w.handle(fsnotify.Event{Name: "/w/f", Op: all}) {
		if e.GetName() != "f" {
			t.Fatalf("name %q", e.GetName())
		}
		got = append(got, e.GetType())
	}
	want := []filesystem.EventType{
		filesystem.EventType_EVENT_TYPE_CREATE, filesystem.EventType_EVENT_TYPE_RENAME, filesystem.EventType_EVENT_TYPE_CHMOD,
		filesystem.EventType_EVENT_TYPE_WRITE, filesystem.EventType_EVENT_TYPE_REMOVE,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	if out := w.handle(fsnotify.Event{Name: "/w", Op: fsnotify.Remove}); len(out) != 0 {
		t.Fatalf("event for the watched directory itself: %v", out)
	}
	// A create already reported by a scan is not reported again.
	w.scanned["/w/s"] = struct{}{}
	if out := w.handle(fsnotify.Event{Name: "/w/s", Op: fsnotify.Create}); len(out) != 0 {
		t.Fatalf("duplicate create: %v", out)
	}
	if out := w.handle(fsnotify.Event{Name: "/w/s", Op: fsnotify.Create}); len(out) != 1 {
		t.Fatalf("second create (after the duplicate) dropped: %v", out)
	}
}

func TestNetworkFS(t *testing.T) {
	tests := []struct {
		magic int64
		want  bool
	}{
		{unix.NFS_SUPER_MAGIC, true},
		{unix.CIFS_SUPER_MAGIC, true},
		{unix.SMB_SUPER_MAGIC, true},
		{unix.SMB2_SUPER_MAGIC, true},
		{unix.FUSE_SUPER_MAGIC, true},
		{unix.EXT4_SUPER_MAGIC, false},
		{unix.TMPFS_MAGIC, false},
		{unix.OVERLAYFS_SUPER_MAGIC, false},
	}
	for _, tt := range tests {
		if _, got := networkFS(tt.magic); got != tt.want {
			t.Errorf("networkFS(%#x) = %v, want %v", tt.magic, got, tt.want)
		}
	}
}

func TestPollingWatcher(t *testing.T) {
	forCodecs(t, func(t *testing.T, e *env) {
		dir := t.TempDir()
		res, err := e.client.CreateWatcher(ctxT(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: dir, Recursive: true, IncludeEntry: true}))
		if err != nil {
			t.Fatal(err)
		}
		id := res.Msg.GetWatcherId()
		if len(id) < 2 || id[0] != 'w' {
			t.Fatalf("watcher id %q", id)
		}
		writeFile(t, filepath.Join(dir, "a.txt"), "x")
		var events []*filesystem.FilesystemEvent
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && len(events) < 2; time.Sleep(20 * time.Millisecond) {
			got, err := e.client.GetWatcherEvents(ctxT(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, got.Msg.GetEvents()...)
		}
		if len(events) != 2 || events[0].GetType() != filesystem.EventType_EVENT_TYPE_CREATE ||
			events[1].GetType() != filesystem.EventType_EVENT_TYPE_WRITE || events[0].GetName() != "a.txt" || events[0].GetEntry() == nil {
			t.Fatalf("events %v, want create and write of a.txt with entries", events)
		}
		got, err := e.client.GetWatcherEvents(ctxT(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
		if err != nil || len(got.Msg.GetEvents()) != 0 {
			t.Fatalf("second poll = %v, %v; want the buffer cleared", got, err)
		}
		if _, err := e.client.RemoveWatcher(ctxT(t), connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: id})); err != nil {
			t.Fatal(err)
		}
		_, err = e.client.GetWatcherEvents(ctxT(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
		wantCode(t, err, connect.CodeNotFound)
		_, err = e.client.RemoveWatcher(ctxT(t), connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: id}))
		wantCode(t, err, connect.CodeNotFound)
	})
}

func TestPollingWatcherFailedAndBounded(t *testing.T) {
	e := newEnv(t, false)
	res, err := e.client.CreateWatcher(ctxT(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	id := res.Msg.GetWatcherId()
	pw, err := e.svc.watcher(id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxBufferedEvents + 5 {
		pw.append([]*filesystem.FilesystemEvent{{Name: string(rune('a' + i%26)), Type: filesystem.EventType(i%5 + 1)}})
	}
	got, err := e.client.GetWatcherEvents(ctxT(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
	if err != nil {
		t.Fatal(err)
	}
	if evs := got.Msg.GetEvents(); len(evs) != maxBufferedEvents || evs[0].GetName() != "f" {
		t.Fatalf("%d events starting with %q; want %d starting at the 6th", len(evs), evs[0].GetName(), maxBufferedEvents)
	}
	// A failed watcher reports its failure.
	pw.mu.Lock()
	pw.err = fsnotify.ErrEventOverflow
	pw.mu.Unlock()
	_, err = e.client.GetWatcherEvents(ctxT(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
	wantCode(t, err, connect.CodeInternal)
}
