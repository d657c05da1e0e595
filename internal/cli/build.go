package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wrenn/wrenn/internal/cli/apiclient"
)

// buildView is the build object (docs/api.md, "Template builds").
type buildView struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	CurrentStep int               `json:"current_step"`
	TotalSteps  int               `json:"total_steps"`
	Logs        []buildLog        `json:"logs"`
	Error       string            `json:"error"`
	DefaultUser string            `json:"default_user"`
	DefaultEnv  map[string]string `json:"default_env"`
	CreatedAt   *time.Time        `json:"created_at"`
}

type buildLog struct {
	Step      int    `json:"step"`
	Phase     string `json:"phase"`
	Cmd       string `json:"cmd"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Exit      int    `json:"exit"`
	OK        bool   `json:"ok"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

// buildEvent is a message of GET /v1/admin/builds/{id}/events.
type buildEvent struct {
	Type        string    `json:"type"`
	Build       buildView `json:"build"`
	CurrentStep int       `json:"current_step"`
	TotalSteps  int       `json:"total_steps"`
	Log         buildLog  `json:"log"`
	Status      string    `json:"status"`
	Error       string    `json:"error"`
	Data        string    `json:"data"`
	Code        string    `json:"code"`
}

func (a *app) buildCommand() *cobra.Command {
	var (
		file, archive, healthcheck, from string
		vcpus, memory                    int
		skip, detach                     bool
	)
	cmd := &cobra.Command{
		Use:   "build NAME -f RECIPE [--archive DIR|FILE] [--healthcheck CHECK] [--from base]",
		Short: "Build a platform template from a recipe (admin)",
		Long: `Build a platform template from a recipe file (one instruction per line: RUN, START, ENV, WORKDIR,
USER, COPY; see docs/api.md). --archive is the build context COPY reads from: a directory (packed here
into a tar.gz) or a tar, tar.gz or zip file. The progress is shown step by step; a failed step's output
is printed and the command exits non-zero.

Subcommands: "build logs ID" prints a build's steps, "build cancel ID" cancels it.`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if file == "" {
				return usagef("-f RECIPE is required")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			config := map[string]any{"name": argv[0], "recipe": strings.Split(strings.TrimRight(string(raw), "\n"), "\n"),
				"base_template": from, "skip_pre_post": skip}
			if healthcheck != "" {
				config["healthcheck"] = healthcheck
			}
			if vcpus > 0 {
				config["vcpus"] = vcpus
			}
			if memory > 0 {
				config["memory_mb"] = memory
			}
			b, err := a.createBuild(cmd.Context(), c, config, archive)
			if err != nil {
				return err
			}
			if detach || a.json {
				if a.json {
					return printValue(a.stdout, b)
				}
				_, err := fmt.Fprintln(a.stdout, b.ID)
				return err
			}
			fmt.Fprintf(a.stderr, "build %s of %s queued\n", b.ID, b.Name)
			return a.followBuild(cmd.Context(), c, b.ID)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "recipe file, one instruction per line")
	f.StringVar(&archive, "archive", "", "build context for COPY: a directory or a tar, tar.gz or zip file")
	f.StringVar(&healthcheck, "healthcheck", "", `"[--interval=3s] [--timeout=10s] [--start-period=0] [--retries=0] CMD": with it the template keeps running processes`)
	f.StringVar(&from, "from", "base", "base template")
	f.IntVar(&vcpus, "vcpus", 0, "vCPUs of the build capsule (default 1)")
	f.IntVar(&memory, "memory", 0, "memory of the build capsule in MiB (default 512)")
	f.BoolVar(&skip, "skip-pre-post", false, "skip the pre-build and post-build phases")
	f.BoolVar(&detach, "detach", false, "print the build id and return without following it")

	logs := &cobra.Command{
		Use:   "logs ID",
		Short: "Print a build's steps and their output",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var b buildView
			raw, err := c.CallInto(cmd.Context(), http.MethodGet, "/v1/admin/builds/"+url.PathEscape(argv[0]), apiclient.AuthUser, nil, &b)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			for _, l := range b.Logs {
				a.printStep(b.TotalSteps, l, true)
			}
			fmt.Fprintf(a.stdout, "status: %s\n", b.Status)
			if b.Error != "" {
				fmt.Fprintf(a.stdout, "error: %s\n", b.Error)
			}
			return nil
		},
	}
	cancel := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a pending or running build",
		Args:  args(1, 1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			_, err = c.Call(cmd.Context(), http.MethodPost, "/v1/admin/builds/"+url.PathEscape(argv[0])+"/cancel", apiclient.AuthUser, nil)
			return err
		},
	}
	cmd.AddCommand(logs, cancel)
	return cmd
}

func (a *app) buildsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "builds",
		Short: "List template builds, newest first (admin)",
		Args:  args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var bs []buildView
			raw, err := c.CallInto(cmd.Context(), http.MethodGet, "/v1/admin/builds", apiclient.AuthUser, nil, &bs)
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.stdout, raw)
			}
			t := newTable(a.stdout, "ID", "NAME", "STATUS", "STEP", "CREATED", "ERROR")
			for _, b := range bs {
				t.row(b.ID, b.Name, b.Status, fmt.Sprintf("%d/%d", b.CurrentStep, b.TotalSteps), ago(b.CreatedAt), orDash(oneLine(b.Error)))
			}
			return t.flush()
		},
	}
}

// createBuild posts the build: JSON without an archive, else multipart streamed from the archive (a
// directory is packed into a tar.gz on the fly).
func (a *app) createBuild(ctx context.Context, c *apiclient.Client, config map[string]any, archive string) (buildView, error) {
	var b buildView
	if archive == "" {
		_, err := c.CallInto(ctx, http.MethodPost, "/v1/admin/builds", apiclient.AuthUser, config, &b)
		return b, err
	}
	st, err := os.Stat(archive)
	if err != nil {
		return b, err
	}
	cfg, err := json.Marshal(config)
	if err != nil {
		return b, err
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		// Owned by this call: it ends when the request has read the pipe or closed it.
		err := mw.WriteField("config", string(cfg))
		if err == nil {
			var part io.Writer
			if part, err = mw.CreateFormFile("archive", filepath.Base(archive)); err == nil {
				if st.IsDir() {
					err = packDir(part, archive)
				} else {
					err = copyFile(part, archive)
				}
			}
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	res, err := c.Request(ctx, http.MethodPost, "/v1/admin/builds", apiclient.AuthUser, pr, mw.FormDataContentType())
	_ = pr.CloseWithError(errors.New("request ended"))
	if err != nil {
		return b, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return b, err
	}
	return b, decodeAnswer(raw, &b)
}

func copyFile(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// packDir writes dir as a tar.gz whose entries are relative to dir.
func packDir(w io.Writer, dir string) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname, h.Uid, h.Gid = "", "", 0, 0
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			return copyFile(tw, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// followBuild shows a build's progress until it ends: one line per step with a progress bar, the output
// of a failed step, and a non-zero exit unless it succeeded.
func (a *app) followBuild(ctx context.Context, c *apiclient.Client, id string) error {
	conn, err := c.Dial(ctx, "/v1/admin/builds/"+url.PathEscape(id)+"/events", apiclient.AuthUser)
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	total, name := 0, id
	var last buildLog
	for {
		_, raw, err := conn.Read(ctx)
		if err != nil {
			return closedError(err)
		}
		var ev buildEvent
		if err := decodeAnswer(raw, &ev); err != nil {
			return err
		}
		switch ev.Type {
		case "build":
			total, name = ev.Build.TotalSteps, ev.Build.Name
			for _, l := range ev.Build.Logs {
				a.printStep(total, l, false)
				last = l
			}
			if done, err := a.buildEnded(ev.Build.Status, ev.Build.Error, name, last); done {
				return err
			}
		case "step":
			total = ev.TotalSteps
			a.printStep(total, ev.Log, false)
			last = ev.Log
		case "status":
			if done, err := a.buildEnded(ev.Status, ev.Error, name, last); done {
				return err
			}
		case "error":
			return &frameError{Code: ev.Code, Message: ev.Data}
		}
	}
}

// buildEnded reports whether a build with status has ended, and how: success → a nil error, otherwise
// the failed step's output is printed and the error exits 1.
func (a *app) buildEnded(status, errMsg, name string, last buildLog) (bool, error) {
	var err error
	switch status {
	case "success":
		fmt.Fprintf(a.stderr, "build succeeded: template %s\n", name)
	case "failed":
		if !last.OK && last.Step > 0 {
			if last.Stdout != "" {
				fmt.Fprintf(a.stderr, "--- stdout of step %d\n%s", last.Step, withNewline(last.Stdout))
			}
			if last.Stderr != "" {
				fmt.Fprintf(a.stderr, "--- stderr of step %d\n%s", last.Step, withNewline(last.Stderr))
			}
		}
		err = &codeError{code: 1, msg: "build failed: " + errMsg}
	case "cancelled":
		err = &codeError{code: 1, msg: "build cancelled"}
	default:
		return false, nil
	}
	return true, err
}

// printStep prints one finished step: a progress bar, the step and how it went (with its output when
// verbose).
func (a *app) printStep(total int, l buildLog, verbose bool) {
	const width = 20
	done := 0
	if total > 0 {
		done = min(width, l.Step*width/total)
	}
	mark := "ok"
	if !l.OK {
		mark = fmt.Sprintf("FAILED (exit %d)", l.Exit)
	}
	fmt.Fprintf(a.stdout, "[%s%s] %d/%d %s: %s  %s %s\n", strings.Repeat("#", done), strings.Repeat(".", width-done),
		l.Step, total, l.Phase, l.Cmd, mark, time.Duration(l.ElapsedMS)*time.Millisecond)
	if verbose {
		if l.Stdout != "" {
			fmt.Fprint(a.stdout, indent(l.Stdout))
		}
		if l.Stderr != "" {
			fmt.Fprint(a.stdout, indent(l.Stderr))
		}
	}
}

func withNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return "    " + strings.Join(lines, "\n    ") + "\n"
}
