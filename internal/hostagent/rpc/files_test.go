package rpc

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestFiles(t *testing.T) {
	h := newHarness(t, true)
	u := testutil.CreateUser(t, testutil.RandomName("wrnapi", 6))
	h.fake.defaultUser = u.Name
	ctx := ctxT(t, 120*time.Second)
	dir := filepath.Join(u.Home, "work")

	// Whole-file write and read, as the capsule's default user.
	w, err := h.client.WriteFile(ctx, connect.NewRequest(&v1.WriteFileRequest{SandboxId: runningID, Path: dir + "/a/hello.txt", Content: []byte("hello")}))
	if err != nil {
		t.Fatal(err)
	}
	e := w.Msg.GetEntry()
	if e.GetName() != "hello.txt" || e.GetPath() != dir+"/a/hello.txt" || e.GetType() != "file" || e.GetSize() != 5 ||
		e.GetOwner() != u.Name || e.GetModifiedAt() == nil || e.GetPermissions() == "" {
		t.Fatalf("entry %v", e)
	}
	var sys syscall.Stat_t
	if err := syscall.Stat(dir+"/a/hello.txt", &sys); err != nil || int(sys.Uid) != u.UID {
		t.Fatalf("file owner uid %d (err %v), want %d", sys.Uid, err, u.UID)
	}
	r, err := h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: dir + "/a/hello.txt"}))
	if err != nil || string(r.Msg.GetContent()) != "hello" {
		t.Fatalf("read %v %v", r, err)
	}
	// Relative paths are the default user's home.
	if r, err := h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: "work/a/hello.txt"})); err != nil || string(r.Msg.GetContent()) != "hello" {
		t.Fatalf("read relative %v %v", r, err)
	}
	_, err = h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: dir + "/missing"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: dir}))
	wantCode(t, err, connect.CodeInvalidArgument)

	// A multi-MiB file streamed up in uneven chunks and down in 64 KiB chunks.
	big := make([]byte, 5<<20+12345)
	_, _ = rand.Read(big)
	start := time.Now()
	ws := h.client.WriteFileStream(ctx)
	if err := ws.Send(&v1.WriteFileStreamRequest{Part: &v1.WriteFileStreamRequest_Meta{Meta: &v1.WriteFileMeta{SandboxId: runningID, Path: dir + "/big.bin"}}}); err != nil {
		t.Fatal(err)
	}
	for rest := big; len(rest) > 0; {
		n := min(len(rest), 100_000)
		if err := ws.Send(&v1.WriteFileStreamRequest{Part: &v1.WriteFileStreamRequest_Chunk{Chunk: rest[:n]}}); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	wres, err := ws.CloseAndReceive()
	if err != nil {
		t.Fatal(err)
	}
	if wres.Msg.GetEntry().GetSize() != int64(len(big)) {
		t.Fatalf("streamed entry %v", wres.Msg.GetEntry())
	}
	up := time.Since(start)
	if got, _ := os.ReadFile(dir + "/big.bin"); !bytes.Equal(got, big) {
		t.Fatal("streamed upload differs on disk")
	}

	start = time.Now()
	rs, err := h.client.ReadFileStream(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: dir + "/big.bin"}))
	if err != nil {
		t.Fatal(err)
	}
	hash := sha256.New()
	var n, chunks int
	for rs.Receive() {
		c := rs.Msg().GetChunk()
		if len(c) > fileChunk || len(c) == 0 {
			t.Fatalf("chunk of %d bytes", len(c))
		}
		hash.Write(c)
		n += len(c)
		chunks++
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	_ = rs.Close()
	down := time.Since(start)
	if sum := sha256.Sum256(big); n != len(big) || !bytes.Equal(hash.Sum(nil), sum[:]) || chunks != (len(big)+fileChunk-1)/fileChunk {
		t.Fatalf("streamed download: %d bytes in %d chunks", n, chunks)
	}
	whole, err := h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: dir + "/big.bin"}))
	if err != nil || !bytes.Equal(whole.Msg.GetContent(), big) {
		t.Fatalf("read big file: %v", err)
	}
	t.Logf("%.1f MiB: stream up %s, stream down %s", float64(len(big))/(1<<20), up.Round(time.Millisecond), down.Round(time.Millisecond))

	// A stream cut off by its client leaves the existing file as it was.
	cctx, cancel := context.WithCancel(ctx)
	calls := h.fake.envdCalls.Load()
	ws = h.client.WriteFileStream(cctx)
	_ = ws.Send(&v1.WriteFileStreamRequest{Part: &v1.WriteFileStreamRequest_Meta{Meta: &v1.WriteFileMeta{SandboxId: runningID, Path: dir + "/big.bin"}}})
	_ = ws.Send(&v1.WriteFileStreamRequest{Part: &v1.WriteFileStreamRequest_Chunk{Chunk: []byte("partial")}})
	// Cancel once the handler has taken the capsule: the upload is under way.
	deadline := time.Now().Add(30 * time.Second)
	for h.fake.envdCalls.Load() == calls && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.fake.envdCalls.Load() == calls {
		t.Fatal("the stream's upload did not start")
	}
	// Cancel without closing the stream first: a client stream's clean end
	// cannot be told apart from a complete upload.
	cancel()
	deadline = time.Now().Add(30 * time.Second)
	for h.fake.doneCalls.Load() != h.fake.envdCalls.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_, err = ws.CloseAndReceive()
	wantCode(t, err, connect.CodeCanceled)
	if got, _ := os.ReadFile(dir + "/big.bin"); !bytes.Equal(got, big) {
		t.Fatal("a cancelled upload changed the file")
	}

	// Whole-file reads stop at 64 MiB.
	huge := dir + "/huge.bin"
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, maxFileBytes+1); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: huge}))
	wantCode(t, err, connect.CodeFailedPrecondition)
	if err := os.Remove(huge); err != nil {
		t.Fatal(err)
	}

	// Directories.
	md, err := h.client.MakeDir(ctx, connect.NewRequest(&v1.MakeDirRequest{SandboxId: runningID, Path: dir + "/x/y"}))
	if err != nil {
		t.Fatal(err)
	}
	if e := md.Msg.GetEntry(); e.GetType() != "dir" || e.GetPath() != dir+"/x/y" || e.GetOwner() != u.Name {
		t.Fatalf("mkdir entry %v", e)
	}
	_, err = h.client.MakeDir(ctx, connect.NewRequest(&v1.MakeDirRequest{SandboxId: runningID, Path: dir + "/x/y"}))
	wantCode(t, err, connect.CodeAlreadyExists)
	if err := os.Symlink("big.bin", dir+"/link"); err != nil {
		t.Fatal(err)
	}

	list := func(depth uint32) map[string]*v1.FileEntry {
		t.Helper()
		res, err := h.client.ListDir(ctx, connect.NewRequest(&v1.ListDirRequest{SandboxId: runningID, Path: dir, Depth: depth}))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*v1.FileEntry{}
		for _, e := range res.Msg.GetEntries() {
			rel, _ := filepath.Rel(dir, e.GetPath())
			out[rel] = e
		}
		return out
	}
	keys := func(m map[string]*v1.FileEntry) []string {
		var k []string
		for n := range m {
			k = append(k, n)
		}
		slices.Sort(k)
		return k
	}
	one := list(0)
	if got := keys(one); !slices.Equal(got, []string{"a", "big.bin", "link", "x"}) {
		t.Fatalf("depth 1: %v", got)
	}
	if l := one["link"]; l.GetType() != "symlink" || l.GetSymlinkTarget() != dir+"/big.bin" {
		t.Fatalf("symlink entry %v", l)
	}
	if d := one["x"]; d.GetType() != "dir" || d.GetName() != "x" {
		t.Fatalf("dir entry %v", d)
	}
	if got := keys(list(2)); !slices.Equal(got, []string{"a", "a/hello.txt", "big.bin", "link", "x", "x/y"}) {
		t.Fatalf("depth 2: %v", got)
	}
	_, err = h.client.ListDir(ctx, connect.NewRequest(&v1.ListDirRequest{SandboxId: runningID, Path: dir + "/missing"}))
	wantCode(t, err, connect.CodeNotFound)

	if _, err := h.client.RemovePath(ctx, connect.NewRequest(&v1.RemovePathRequest{SandboxId: runningID, Path: dir + "/x"})); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.RemovePath(ctx, connect.NewRequest(&v1.RemovePathRequest{SandboxId: runningID, Path: dir + "/big.bin"})); err != nil {
		t.Fatal(err)
	}
	if got := keys(list(1)); !slices.Equal(got, []string{"a", "link"}) {
		t.Fatalf("after remove: %v", got)
	}
}

// File calls run as the default user: what it may not read or write is
// PermissionDenied and changes nothing.
func TestFilePermissions(t *testing.T) {
	h := newHarness(t, true)
	u := testutil.CreateUser(t, testutil.RandomName("wrnperm", 6))
	h.fake.defaultUser = u.Name
	ctx := ctxT(t, 60*time.Second)
	root := t.TempDir() // 0700 root: the user may not enter it
	secret := filepath.Join(root, "secret.txt")
	if err := os.WriteFile(secret, []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"read": func() error {
			_, err := h.client.ReadFile(ctx, connect.NewRequest(&v1.ReadFileRequest{SandboxId: runningID, Path: secret}))
			return err
		},
		"overwrite": func() error {
			_, err := h.client.WriteFile(ctx, connect.NewRequest(&v1.WriteFileRequest{SandboxId: runningID, Path: secret, Content: []byte("x")}))
			return err
		},
		"create": func() error {
			_, err := h.client.WriteFile(ctx, connect.NewRequest(&v1.WriteFileRequest{SandboxId: runningID, Path: root + "/new/f", Content: []byte("x")}))
			return err
		},
		"mkdir": func() error {
			_, err := h.client.MakeDir(ctx, connect.NewRequest(&v1.MakeDirRequest{SandboxId: runningID, Path: root + "/d"}))
			return err
		},
		"remove": func() error {
			_, err := h.client.RemovePath(ctx, connect.NewRequest(&v1.RemovePathRequest{SandboxId: runningID, Path: secret}))
			return err
		},
		"list": func() error {
			_, err := h.client.ListDir(ctx, connect.NewRequest(&v1.ListDirRequest{SandboxId: runningID, Path: root}))
			return err
		},
		"home is not": func() error {
			_, err := h.client.WriteFile(ctx, connect.NewRequest(&v1.WriteFileRequest{SandboxId: runningID, Path: "/etc/wrenn-perm-test", Content: []byte("x")}))
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { wantCode(t, call(), connect.CodePermissionDenied) })
	}
	if b, _ := os.ReadFile(secret); string(b) != "root only" {
		t.Fatalf("secret changed: %q", b)
	}
	for _, p := range []string{root + "/new", root + "/d", "/etc/wrenn-perm-test"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
	// Its own home works, via ~ too.
	if _, err := h.client.WriteFile(ctx, connect.NewRequest(&v1.WriteFileRequest{SandboxId: runningID, Path: "~/mine/f", Content: []byte("ok")})); err != nil {
		t.Fatalf("write in home: %v", err)
	}
}
