package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// fileEntry is a file-browser entry (docs/api.md).
type fileEntry struct {
	Name          string `json:"name"`
	Path          string `json:"path"`
	Type          string `json:"type"`
	Size          int64  `json:"size"`
	Permissions   string `json:"permissions"`
	Owner         string `json:"owner"`
	Group         string `json:"group"`
	ModifiedAt    int64  `json:"modified_at"`
	SymlinkTarget string `json:"symlink_target"`
}

func (a *app) filesCommand() *cobra.Command {
	return group("files", "List, copy, remove and create files in capsules", []string{"file"},
		a.filesList(),
		a.filesCopy(),
		a.filesRemove(),
		a.filesMkdir(),
	)
}

func (a *app) filesList() *cobra.Command {
	return &cobra.Command{
		Use:     "ls ID [PATH]",
		Aliases: []string{"list"},
		Short:   "List a directory of a capsule (default: the user's home)",
		Args:    args(1, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			dir := "."
			if len(argv) == 2 {
				dir = argv[1]
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var res struct {
				Entries []fileEntry `json:"entries"`
			}
			raw, err := c.CallInto(cmd.Context(), http.MethodPost, capsulePath(argv[0], "files", "list"), apiclient.AuthKey,
				map[string]any{"path": dir, "depth": 1}, &res)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			t := newTable(a.stdout, "PERMISSIONS", "OWNER", "GROUP", "SIZE", "MODIFIED", "NAME")
			for _, e := range res.Entries {
				name := e.Name
				switch {
				case e.Type == "directory":
					name += "/"
				case e.SymlinkTarget != "":
					name += " -> " + e.SymlinkTarget
				}
				mod := time.Unix(e.ModifiedAt, 0)
				t.row(e.Permissions, e.Owner, e.Group, fmt.Sprint(e.Size), mod.Local().Format(time.DateTime), name)
			}
			return t.flush()
		},
	}
}

func (a *app) filesRemove() *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID PATH",
		Short: "Remove a file or directory (recursively) in a capsule",
		Args:  args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if _, err := c.Call(cmd.Context(), http.MethodPost, capsulePath(argv[0], "files", "remove"), apiclient.AuthKey,
				map[string]string{"path": argv[1]}); err != nil {
				return err
			}
			if a.json {
				return printValue(a.stdout, map[string]string{"capsule_id": argv[0], "path": argv[1]})
			}
			return nil
		},
	}
}

func (a *app) filesMkdir() *cobra.Command {
	return &cobra.Command{
		Use:   "mkdir ID PATH",
		Short: "Create a directory (and missing parents) in a capsule",
		Args:  args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := c.Call(cmd.Context(), http.MethodPost, capsulePath(argv[0], "files", "mkdir"), apiclient.AuthKey,
				map[string]string{"path": argv[1]})
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			return nil
		},
	}
}

// remote is one side of `files cp`: ID:PATH in a capsule, or a local path ("-" = stdin/stdout).
type remote struct {
	id, path string
}

// parseRemote reads ID:PATH. Like scp, an argument is remote when it has a ":" before any "/";
// write a local file whose name has a colon as ./name.
func parseRemote(s string) (remote, bool) {
	i := strings.IndexByte(s, ':')
	if i <= 0 || strings.Contains(s[:i], "/") {
		return remote{}, false
	}
	return remote{id: s[:i], path: s[i+1:]}, true
}

func (a *app) filesCopy() *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy a file into or out of a capsule (ID:PATH on the capsule's side)",
		Long: `Copy one file between this machine and a capsule; the capsule's side is written ID:PATH.
  wrenn files cp ./data.bin cl-…:/tmp/data.bin     upload (missing directories are created)
  wrenn files cp cl-…:/tmp/out.log ./out.log       download
"-" is stdin (upload) or stdout (download). A destination ending in "/" (or an existing local
directory) receives the source's base name. Transfers are streamed: any size, bounded memory.`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, argv []string) error {
			src, srcRemote := parseRemote(argv[0])
			dst, dstRemote := parseRemote(argv[1])
			switch {
			case srcRemote && dstRemote:
				return usagef("both SRC and DST are in capsules: copy through this machine")
			case !srcRemote && !dstRemote:
				return usagef("neither SRC nor DST is in a capsule: write the capsule's side as ID:PATH")
			case srcRemote && src.path == "", dstRemote && dst.path == "":
				return usagef("the capsule path after ID: is empty")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var (
				n    int64
				from = argv[0]
				to   = argv[1]
			)
			if dstRemote {
				dst.path, err = remoteTarget(dst.path, argv[0])
				if err != nil {
					return err
				}
				to = dst.id + ":" + dst.path
				n, err = a.upload(cmd.Context(), c, argv[0], dst)
			} else {
				if to, err = localTarget(argv[1], src.path); err != nil {
					return err
				}
				n, err = a.download(cmd.Context(), c, src, to)
			}
			if err != nil {
				return err
			}
			if a.json {
				return printValue(a.stdout, map[string]any{"source": from, "destination": to, "bytes": n})
			}
			return nil
		},
	}
}

// remoteTarget completes a capsule destination ending in "/" with the local source's base name.
func remoteTarget(dst, src string) (string, error) {
	if !strings.HasSuffix(dst, "/") {
		return dst, nil
	}
	if src == "-" {
		return "", usagef("copying stdin needs a file name, not the directory %q", dst)
	}
	return dst + filepath.Base(src), nil
}

// localTarget completes a local destination that is a directory with the remote source's base name.
func localTarget(dst, src string) (string, error) {
	if dst == "-" {
		return dst, nil
	}
	base := path.Base(src)
	if strings.HasSuffix(dst, "/") || strings.HasSuffix(dst, string(filepath.Separator)) {
		return filepath.Join(dst, base), nil
	}
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		return filepath.Join(dst, base), nil
	}
	return dst, nil
}

// upload streams a local file (or stdin) to files/stream/write: the path field, then the file part,
// written through a pipe as the request is sent.
func (a *app) upload(ctx context.Context, c *apiclient.Client, src string, dst remote) (int64, error) {
	var in io.Reader
	if src == "-" {
		in = a.stdin
	} else {
		f, err := os.Open(src)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			return 0, fmt.Errorf("%s is a directory: files cp copies one file", src)
		}
		in = f
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	type written struct {
		n   int64
		err error
	}
	done := make(chan written, 1)
	go func() {
		var w written
		w.err = mw.WriteField("path", dst.path)
		if w.err == nil {
			var part io.Writer
			if part, w.err = mw.CreateFormFile("file", path.Base(dst.path)); w.err == nil {
				if w.n, w.err = io.Copy(part, in); w.err == nil {
					w.err = mw.Close()
				}
			}
		}
		pw.CloseWithError(w.err)
		done <- w
	}()
	res, err := c.Request(ctx, http.MethodPost, capsulePath(dst.id, "files", "stream", "write"), apiclient.AuthKey, pr, mw.FormDataContentType())
	// The request is over: a writer still blocked on the pipe (after an early error answer) is released.
	pr.CloseWithError(io.ErrClosedPipe)
	w := <-done
	if w.err != nil && !errors.Is(w.err, io.ErrClosedPipe) {
		return 0, fmt.Errorf("read %s: %w", src, w.err)
	}
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return w.n, nil
}

// download streams files/stream/read to a local file (written next to it, then renamed into place:
// a failed transfer leaves nothing) or to stdout.
func (a *app) download(ctx context.Context, c *apiclient.Client, src remote, dst string) (int64, error) {
	body, err := json.Marshal(map[string]string{"path": src.path})
	if err != nil {
		return 0, err
	}
	res, err := c.Request(ctx, http.MethodPost, capsulePath(src.id, "files", "stream", "read"), apiclient.AuthKey,
		bytes.NewReader(body), "application/json")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if dst == "-" {
		n, err := io.Copy(a.stdout, res.Body)
		if err != nil {
			return n, fmt.Errorf("download %s:%s: %w", src.id, src.path, err)
		}
		return n, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".wrenn-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, res.Body)
	if err != nil {
		tmp.Close()
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		return n, fmt.Errorf("download %s:%s: %w", src.id, src.path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return n, err
	}
	if err := tmp.Close(); err != nil {
		return n, err
	}
	return n, os.Rename(tmp.Name(), dst)
}
