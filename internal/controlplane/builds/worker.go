package builds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	hav1 "github.com/wrenn/wrenn/api/hostagent/hostagent/v1"
	"github.com/wrenn/wrenn/internal/controlplane/auth"
	"github.com/wrenn/wrenn/internal/controlplane/builds/archive"
	"github.com/wrenn/wrenn/internal/controlplane/builds/recipe"
	"github.com/wrenn/wrenn/internal/controlplane/capsules"
	"github.com/wrenn/wrenn/internal/controlplane/ids"
	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
)

// Limits of the steps around the recipe (docs/api.md).
const (
	archiveTimeout = 120 * time.Second
	envTimeout     = 30 * time.Second
	// maxOutput is how much of each stream of a step the build log keeps.
	maxOutput = 64 << 10
	// archivePath is where the normalised tar is written in the build capsule before extraction.
	archivePath = "/tmp/wrenn-build-archive.tar"
)

// system is the actor of the builder's capsule operations.
var system = auth.Identity{}

// errStopped marks a build that stopped running under its worker (cancelled, or failed elsewhere).
var errStopped = errors.New("build is no longer running")

// run works on claimed build b until it ends, keeping its lease.
func (s *Service) run(parent context.Context, b db.Build) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	defer s.track(b.ID, cancel)()
	log := s.log.With("build_id", buildID(b.ID), "name", b.Name)
	log.Info("build started")

	var wg sync.WaitGroup
	wg.Go(func() { s.keepLease(ctx, cancel, b) })
	w := &worker{s: s, b: b, log: log}
	err := w.build(ctx)
	cancel()
	wg.Wait()

	bg := context.WithoutCancel(parent)
	if err != nil && w.capsule != "" && !w.captured {
		if derr := s.caps.DestroyPlatform(bg, system, w.capsuleID); derr != nil {
			log.Warn("destroy build capsule", "err", derr)
		}
	}
	if _, derr := s.store.DeleteBuildArchive(bg, b.ID); derr != nil {
		log.Warn("delete build archive", "err", derr)
	}
	if err == nil {
		log.Info("build succeeded")
		return
	}
	msg := err.Error()
	if parent.Err() != nil {
		msg = errLost
	}
	if n, ferr := s.store.FailBuild(bg, db.FailBuildParams{ID: b.ID, Reason: &msg}); ferr != nil {
		log.Error("record failed build", "err", ferr)
	} else if n == 0 {
		log.Info("build stopped", "reason", err)
	} else {
		log.Warn("build failed", "err", msg)
	}
}

// keepLease renews b's lease until ctx ends; when the build is no longer running (cancelled, or failed
// by another control plane) it cancels the work.
func (s *Service) keepLease(ctx context.Context, cancel context.CancelFunc, b db.Build) {
	t := time.NewTicker(s.cfg.Lease / 10)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.store.RenewBuildLease(ctx, db.RenewBuildLeaseParams{ID: b.ID, LeaseSec: s.cfg.Lease.Seconds()})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("renew build lease", "build_id", buildID(b.ID), "err", err)
			}
			continue
		}
		if n == 0 {
			cancel()
			return
		}
	}
}

// worker runs one build.
type worker struct {
	s         *Service
	b         db.Build
	log       *slog.Logger
	capsule   string // cl-… once created
	target    capsules.Target
	captured  bool
	step      int32
	state     recipe.State
	capsuleID uuid.UUID
}

func (w *worker) build(ctx context.Context) error {
	var hc *recipe.Healthcheck
	if w.b.Healthcheck != nil {
		h, err := recipe.ParseHealthcheck(*w.b.Healthcheck)
		if err != nil {
			return err
		}
		hc = &h
	}
	steps, err := recipe.Parse(w.b.Recipe)
	if err != nil {
		return err
	}
	if err := w.createCapsule(ctx); err != nil {
		return err
	}
	if w.b.ArchiveBytes > 0 {
		actx, cancel := context.WithTimeout(ctx, archiveTimeout)
		err := w.uploadArchive(actx)
		cancel()
		if err != nil {
			return w.stopped(ctx, fmt.Errorf("archive upload failed: %w", err))
		}
	}
	w.state = recipe.State{Env: w.initialEnv(ctx)}
	if !w.b.SkipPrePost {
		if err := w.phase(ctx, recipe.PreBuildPhase, recipe.PreBuild(), recipe.PhaseTimeout); err != nil {
			return err
		}
	}
	if err := w.phase(ctx, recipe.RecipePhase, steps, recipe.RecipeTimeout); err != nil {
		return err
	}
	defaultUser := w.state.User
	if defaultUser == "" {
		defaultUser = "root"
	}
	defaultEnv := recipe.DefaultEnv(w.state.Env)
	running := w.state // the state services run in, for the healthcheck
	running.Env = maps.Clone(w.state.Env)
	if !w.b.SkipPrePost {
		w.state.SetUser("root")
		w.state.Workdir = ""
		if err := w.phase(ctx, recipe.PostBuildPhase, recipe.PostBuild(), recipe.PhaseTimeout); err != nil {
			return err
		}
	}
	if hc != nil {
		running.User = defaultUser
		if err := w.healthcheck(ctx, *hc, running); err != nil {
			return w.stopped(ctx, err)
		}
	}
	if ctx.Err() != nil {
		return errStopped
	}
	w.captured = true // the capture consumes the capsule, whatever its outcome
	tpl, err := w.s.caps.CaptureBuild(ctx, system, capsules.BuildCapture{
		CapsuleID: w.capsule, Name: w.b.Name, Memory: hc != nil, DefaultUser: defaultUser, DefaultEnv: defaultEnv,
		CreatedBy: w.b.CreatedBy,
	})
	if err != nil {
		return fmt.Errorf("template capture failed: %w", err)
	}
	n, err := w.s.store.SucceedBuild(context.WithoutCancel(ctx), db.SucceedBuildParams{
		ID: w.b.ID, TemplateID: &tpl.ID, DefaultUser: &defaultUser, DefaultEnv: defaultEnv,
	})
	if err != nil {
		return fmt.Errorf("record build: %w", err)
	}
	if n == 0 {
		return errStopped
	}
	return nil
}

// stopped returns errStopped instead of err when the build was stopped meanwhile (the error is then
// the abort's, not the build's).
func (w *worker) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errStopped
	}
	return err
}

// createCapsule creates the build capsule under the platform team and records it on the build.
func (w *worker) createCapsule(ctx context.Context) error {
	c, err := w.s.caps.Create(ctx, system, store.PlatformTeamID, capsules.CreateParams{
		Template: w.b.BaseTemplate, VCPUs: w.b.VCPUs, MemoryMB: w.b.MemoryMB, AllowInternet: true,
	})
	if err != nil {
		return w.stopped(ctx, fmt.Errorf("create build capsule: %w", err))
	}
	w.capsule, w.capsuleID = ids.Capsule.Format(c.ID), c.ID
	n, err := w.s.store.SetBuildCapsule(context.WithoutCancel(ctx), db.SetBuildCapsuleParams{ID: w.b.ID, CapsuleID: &c.ID, HostID: c.HostID})
	if err != nil {
		return fmt.Errorf("record build capsule: %w", err)
	}
	if n == 0 {
		return errStopped
	}
	if w.target, err = w.s.caps.Resolve(ctx, store.PlatformTeamID, w.capsule, store.CapsuleRunning); err != nil {
		return w.stopped(ctx, fmt.Errorf("build capsule: %w", err))
	}
	return nil
}

// uploadArchive writes the build's archive, normalised to a plain tar, into the capsule and extracts
// it into the staging directory, world-readable.
func (w *worker) uploadArchive(ctx context.Context) error {
	f, err := os.CreateTemp("", "wrenn-build-archive-*")
	if err != nil {
		return err
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	var size int64
	for seq := int32(0); ; seq++ {
		data, err := w.s.store.GetBuildArchiveChunk(ctx, db.GetBuildArchiveChunkParams{BuildID: w.b.ID, Seq: seq})
		if store.IsNotFound(err) {
			break
		}
		if err != nil {
			return fmt.Errorf("read stored archive: %w", err)
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		size += int64(len(data))
	}
	if size != w.b.ArchiveBytes {
		return fmt.Errorf("stored archive has %d of %d bytes", size, w.b.ArchiveBytes)
	}
	stream := w.target.Agent.WriteFileStream(ctx)
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Go(func() { pw.CloseWithError(archive.WriteTar(pw, f, size)) })
	err = sendFile(stream, w.capsule, archivePath, pr)
	_ = pr.CloseWithError(errors.New("upload ended"))
	wg.Wait()
	if err != nil {
		return err
	}
	script := "mkdir -p " + recipe.Quote(recipe.StagingDir) + " && tar -xf " + archivePath + " -C " +
		recipe.Quote(recipe.StagingDir) + " --no-same-owner --no-same-permissions && rm -f " + archivePath +
		" && chmod -R a+rX " + recipe.Quote(recipe.StagingDir)
	res := w.exec(ctx, script, archiveTimeout)
	if res.exit != 0 {
		return errors.New(res.failure())
	}
	return nil
}

// sendFile streams r into path of capsule id.
func sendFile(stream *connect.ClientStreamForClient[hav1.WriteFileStreamRequest, hav1.WriteFileResponse], id, path string, r io.Reader) error {
	err := stream.Send(&hav1.WriteFileStreamRequest{Part: &hav1.WriteFileStreamRequest_Meta{Meta: &hav1.WriteFileMeta{SandboxId: id, Path: path}}})
	buf := make([]byte, 256<<10)
	for err == nil {
		n, rerr := r.Read(buf)
		if n > 0 {
			err = stream.Send(&hav1.WriteFileStreamRequest{Part: &hav1.WriteFileStreamRequest_Chunk{Chunk: buf[:n]}})
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			err = rerr
		}
	}
	_, cerr := stream.CloseAndReceive()
	if err != nil {
		return err
	}
	return cerr
}

// initialEnv is the output of env in the fresh capsule (fallback: a default PATH and HOME=/root).
func (w *worker) initialEnv(ctx context.Context) map[string]string {
	env := map[string]string{}
	res := w.exec(ctx, "env", envTimeout)
	if res.exit == 0 {
		for line := range strings.SplitSeq(res.stdout, "\n") {
			k, v, ok := strings.Cut(line, "=")
			if ok && k != "" && !strings.ContainsAny(k, " \t") {
				env[k] = v
			}
		}
	}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env["HOME"] = "/root"
	return env
}

// phase runs the steps of one phase, recording each.
func (w *worker) phase(ctx context.Context, name string, steps []recipe.Instruction, runDefault time.Duration) error {
	for _, in := range steps {
		start := time.Now()
		res := w.instruction(ctx, in, in.Limit(runDefault))
		w.step++
		entry := LogEntry{Step: int(w.step), Phase: name, Cmd: in.Text, Stdout: res.stdout, Stderr: res.stderr,
			Exit: res.exit, OK: res.exit == 0, ElapsedMS: time.Since(start).Milliseconds()}
		if err := w.record(ctx, entry); err != nil {
			return err
		}
		if !entry.OK {
			return w.stopped(ctx, fmt.Errorf("%s step %d failed: %s", name, w.step, res.failure()))
		}
	}
	return nil
}

// record persists a finished step.
func (w *worker) record(ctx context.Context, e LogEntry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	n, err := w.s.store.AddBuildStep(context.WithoutCancel(ctx), db.AddBuildStepParams{ID: w.b.ID, CurrentStep: w.step, Entry: raw})
	if err != nil {
		return fmt.Errorf("record build step: %w", err)
	}
	if n == 0 {
		return errStopped
	}
	return nil
}

// instruction runs one instruction in the build capsule and updates the state.
func (w *worker) instruction(ctx context.Context, in recipe.Instruction, limit time.Duration) result {
	switch in.Kind {
	case recipe.Run:
		return w.exec(ctx, w.state.Script(in.Command), limit)
	case recipe.Start:
		launch := "setsid nohup /bin/sh -c " + recipe.Quote(in.Command) + " </dev/null >/dev/null 2>&1 &"
		return w.exec(ctx, w.state.Script(launch), limit)
	case recipe.Env:
		w.state.Env[in.Key] = recipe.Expand(in.Value, w.state.Env)
		return result{}
	case recipe.Workdir:
		dir := w.state.Resolve(in.Path)
		res := w.exec(ctx, workdirScript(dir, w.state.User), limit)
		if res.exit == 0 {
			w.state.Workdir = dir
		}
		return res
	case recipe.User:
		res := w.exec(ctx, userScript(in.Path), limit)
		if res.exit == 0 {
			w.state.SetUser(in.Path)
		}
		return res
	case recipe.Copy:
		dst := w.state.Resolve(in.Dest)
		intoDir := len(in.Sources) > 1 || strings.HasSuffix(in.Dest, "/")
		return w.exec(ctx, copyScript(in.Sources, dst, intoDir, w.state.User), limit)
	}
	return result{exit: -1, stderr: "unknown instruction " + string(in.Kind)}
}

// owner is the chown argument of user's files ("user:" = the user and its login group).
func owner(user string) string {
	if user == "" {
		user = "root"
	}
	return recipe.Quote(user) + ":"
}

// workdirScript creates dir as root; directories it creates under user's home are chowned to user.
func workdirScript(dir, user string) string {
	q := recipe.Quote(dir)
	s := "d=" + q + "; first=; while [ ! -e \"$d\" ]; do first=$d; d=$(dirname \"$d\"); done; mkdir -p " + q
	if user != "" && user != "root" {
		home := recipe.Home(user)
		s += " && case \"$first\" in " + recipe.Quote(home) + "|" + recipe.Quote(home) + "/*) chown -R " + owner(user) + " \"$first\";; esac"
	}
	return s
}

// userScript creates user (home, bash, passwordless sudo) when absent.
func userScript(user string) string {
	if user == "root" {
		return "true"
	}
	q := recipe.Quote(user)
	sudoers := recipe.Quote("/etc/sudoers.d/wrenn-" + user)
	return "id -u " + q + " >/dev/null 2>&1 || useradd -m -s /bin/bash " + q +
		" && mkdir -p /etc/sudoers.d && printf '%s ALL=(ALL) NOPASSWD:ALL\\n' " + q + " > " + sudoers +
		" && chmod 0440 " + sudoers
}

// copyScript copies sources (relative to the staging directory) to dst as root, then chowns dst to user.
// intoDir: dst is a directory the sources go into.
func copyScript(sources []string, dst string, intoDir bool, user string) string {
	var b strings.Builder
	b.WriteString("set -e; dst=" + recipe.Quote(dst) + "; ")
	if intoDir {
		b.WriteString("mkdir -p \"$dst\"; ")
	}
	for _, src := range sources {
		b.WriteString("s=" + recipe.Quote(path.Join(recipe.StagingDir, src)) + "; ")
		b.WriteString("[ -e \"$s\" ] || [ -L \"$s\" ] || { echo " + recipe.Quote("COPY source not found in the archive: "+src) + " >&2; exit 1; }; ")
		b.WriteString("if [ -d \"$s\" ] && [ ! -L \"$s\" ]; then mkdir -p \"$dst\"; cp -a \"$s/.\" \"$dst/\"; " +
			"elif [ -d \"$dst\" ]; then cp -a \"$s\" \"$dst/\"; " +
			"else mkdir -p \"$(dirname \"$dst\")\"; cp -a \"$s\" \"$dst\"; fi; ")
	}
	b.WriteString("chown -R " + owner(user) + " \"$dst\"")
	return b.String()
}

// healthcheck waits until hc passes in state (docs/api.md, "Healthcheck").
func (w *worker) healthcheck(ctx context.Context, hc recipe.Healthcheck, state recipe.State) error {
	start := time.Now()
	failures := 0
	for {
		res := w.exec(ctx, state.Script(hc.Command), hc.Timeout)
		if res.exit == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return errStopped
		}
		if time.Since(start) >= hc.StartPeriod {
			failures++
		}
		if (hc.Retries > 0 && failures >= hc.Retries) || time.Since(start)+hc.Interval > hc.Deadline() {
			return fmt.Errorf("healthcheck failed: %s", res.failure())
		}
		select {
		case <-ctx.Done():
			return errStopped
		case <-time.After(hc.Interval):
		}
	}
}

// result is the outcome of one command in the build capsule; exit -1: it could not run or timed out.
type result struct {
	stdout, stderr string
	exit           int
}

// failure is the reason of a failed result: its stderr, or its exit code.
func (r result) failure() string {
	if s := strings.TrimSpace(r.stderr); s != "" {
		return s
	}
	return fmt.Sprintf("exit code %d", r.exit)
}

// exec runs script with /bin/sh -c as root in the build capsule, at most limit; cancelling ctx
// kills it.
func (w *worker) exec(ctx context.Context, script string, limit time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	stream, err := w.target.Agent.ExecStream(ctx, connect.NewRequest(&hav1.ExecRequest{
		SandboxId: w.capsule, Cmd: "/bin/sh", Args: []string{"-c", script}, User: "root",
		TimeoutSec: int32((limit + time.Second - 1) / time.Second),
	}))
	if err != nil {
		return result{exit: -1, stderr: err.Error()}
	}
	defer stream.Close()
	var out, errb capped
	exit, ended := -1, false
	var endErr string
	for stream.Receive() {
		m := stream.Msg()
		if d := m.GetData(); d != nil {
			out.Write(d.GetStdout())
			errb.Write(d.GetStderr())
		}
		if e := m.GetEnd(); e != nil {
			exit, ended, endErr = int(e.GetExitCode()), true, e.GetError()
		}
	}
	r := result{stdout: out.String(), stderr: errb.String(), exit: exit}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		r.exit = -1
		r.stderr = strings.TrimSpace(r.stderr + "\n" + fmt.Sprintf("timed out after %s", limit))
	case !ended || stream.Err() != nil:
		r.exit = -1
		if err := stream.Err(); err != nil {
			r.stderr = strings.TrimSpace(r.stderr + "\n" + err.Error())
		}
	case endErr != "" && r.exit == 0:
		r.exit = -1
		r.stderr = strings.TrimSpace(r.stderr + "\n" + endErr)
	}
	return r
}

// capped keeps the first maxOutput bytes written to it.
type capped struct{ b []byte }

func (c *capped) Write(p []byte) {
	if room := maxOutput - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(room, len(p))]...)
	}
}

func (c *capped) String() string { return strings.ToValidUTF8(string(c.b), "\uFFFD") }
