package cli_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/wrenn/wrenn/internal/cli/profile"
	"github.com/wrenn/wrenn/internal/testutil"
)

// capsuleJSON is what the tests read of `--json capsule …`.
type capsuleJSON struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Template string `json:"template"`
	MemoryMB int    `json:"memory_mb"`
	HostID   string `json:"host_id"`
}

type processJSON struct {
	PID      int    `json:"pid"`
	Tag      string `json:"tag"`
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code"`
}

// TestCLI drives one platform through every command of the CLI: login, hosts, capsules, exec,
// background processes, files, the terminal, snapshots and templates, pause/resume, and bad input.
func TestCLI(t *testing.T) {
	p := newPlatform(t)

	t.Run("login", func(t *testing.T) { testLogin(t, p) })
	if t.Failed() {
		return
	}
	p.addHost(t)

	id := strings.TrimSpace(p.ok(t, "capsule", "create", "--template", "minimal", "--memory", "256"))
	if !strings.HasPrefix(id, "cl-") || strings.ContainsAny(id, " \n") {
		t.Fatalf("capsule create printed %q, want a capsule id", id)
	}
	// Registered after the agent: runs before its cleanup (which checks that nothing is left).
	t.Cleanup(func() { p.run(nil, "capsule", "rm", id) })

	t.Run("capsules", func(t *testing.T) { testCapsules(t, p, id) })
	t.Run("exec", func(t *testing.T) { testExec(t, p, id) })
	t.Run("background", func(t *testing.T) { testBackground(t, p, id) })
	t.Run("files", func(t *testing.T) { testFiles(t, p, id) })
	t.Run("shell", func(t *testing.T) { testShell(t, p, id) })
	t.Run("shell-pipe", func(t *testing.T) { testShellPipe(t, p, id) })
	t.Run("snapshot", func(t *testing.T) { testSnapshot(t, p, id) })
	t.Run("pause-resume", func(t *testing.T) { testPauseResume(t, p, id) })
	t.Run("hosts", func(t *testing.T) { testHosts(t, p) })
	t.Run("bad-input", func(t *testing.T) { testBadInput(t, p, id) })
	t.Run("rm", func(t *testing.T) {
		if out := p.ok(t, "capsule", "rm", id); out != id+"\n" {
			t.Fatalf("capsule rm printed %q", out)
		}
		var c capsuleJSON
		p.okJSON(t, &c, "capsule", "get", id)
		if c.Status != "stopped" {
			t.Fatalf("after rm: status %q", c.Status)
		}
		var caps []capsuleJSON
		p.okJSON(t, &caps, "capsule", "list")
		for _, c := range caps {
			if c.ID == id {
				t.Fatalf("removed capsule still listed: %+v", c)
			}
		}
	})
}

func testLogin(t *testing.T, p *platform) {
	out := p.runEnv([]string{"WRENN_PASSWORD=" + adminPassword}, nil, "login", "--url", p.URL, "--email", adminEmail)
	if out.code != 0 || !strings.Contains(out.stdout, "Logged in to "+p.URL) {
		t.Fatalf("login: exit %d\nstdout: %s\nstderr: %s", out.code, out.stdout, out.stderr)
	}
	fi, err := os.Stat(p.config)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile file mode %v, want 0600", fi.Mode().Perm())
	}
	cfg, err := profile.Load(p.config)
	if err != nil {
		t.Fatal(err)
	}
	prof, name, err := cfg.Profile("")
	if err != nil || name != "default" || prof.URL != p.URL || !strings.HasPrefix(prof.APIKey, "wrn_") ||
		prof.Token == "" || prof.Email != adminEmail {
		t.Fatalf("profile %q: %+v (%v)", name, prof, err)
	}

	// A second login (password flag, JSON output) refreshes the JWT and keeps the working API key.
	var res struct {
		Profile string `json:"profile"`
		URL     string `json:"url"`
		Email   string `json:"email"`
		UserID  string `json:"user_id"`
	}
	p.okJSON(t, &res, "login", "--url", p.URL, "--email", adminEmail, "--password", adminPassword)
	if res.Profile != "default" || res.URL != p.URL || res.Email != adminEmail || !strings.HasPrefix(res.UserID, "usr-") {
		t.Fatalf("login --json: %+v", res)
	}
	cfg, _ = profile.Load(p.config)
	if again := cfg.Profiles["default"]; again.APIKey != prof.APIKey {
		t.Fatalf("second login replaced the API key %s… with %s…", prof.APIKey[:10], again.APIKey[:10])
	}

	p.fails(t, 1, "invalid email or password", "login", "--url", p.URL, "--email", adminEmail, "--password", "wrong-password")
	p.fails(t, 2, "--password", "login", "--url", p.URL, "--email", adminEmail) // no password, stdin not a terminal
}

func testCapsules(t *testing.T, p *platform, id string) {
	var c capsuleJSON
	p.okJSON(t, &c, "capsule", "get", id)
	if c.ID != id || c.Status != "running" || c.Template != "minimal" || c.MemoryMB != 256 || c.HostID != p.HostID {
		t.Fatalf("capsule get --json: %+v", c)
	}
	get := p.ok(t, "capsule", "get", id)
	for _, want := range []string{id, "running", "minimal", "256 MiB", p.HostID} {
		if !strings.Contains(get, want) {
			t.Fatalf("capsule get: %q lacks %q", get, want)
		}
	}
	list := p.ok(t, "capsule", "ls")
	if !strings.HasPrefix(list, "ID ") || !strings.Contains(list, id) {
		t.Fatalf("capsule ls:\n%s", list)
	}
	var caps []capsuleJSON
	p.okJSON(t, &caps, "capsule", "list")
	if len(caps) != 1 || caps[0].ID != id {
		t.Fatalf("capsule list --json: %+v", caps)
	}
}

func testExec(t *testing.T, p *platform, id string) {
	// Output passes through; the exit code mirrors the remote one.
	out, errOut, code := p.run(nil, "capsule", "exec", id, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	if out != "out\n" || errOut != "err\n" || code != 3 {
		t.Fatalf("exec: stdout %q stderr %q exit %d; want out, err, 3", out, errOut, code)
	}
	// No "--" needed for a command without flags.
	if out := p.ok(t, "capsule", "exec", id, "echo", "plain"); out != "plain\n" {
		t.Fatalf("exec echo: %q", out)
	}
	// Environment and working directory.
	if out := p.ok(t, "capsule", "exec", "--env", "GREETING=hello world", "-e", "X=1", "--cwd", "/tmp", id, "--",
		"sh", "-c", `echo "$GREETING $X"; pwd`); out != "hello world 1\n/tmp\n" {
		t.Fatalf("exec with env and cwd: %q", out)
	}
	// Bytes that are not UTF-8 (the API sends base64) come out exactly.
	out, _, code = p.run(nil, "capsule", "exec", id, "--", "printf", `\377\000\376`)
	if code != 0 || out != "\xff\x00\xfe" {
		t.Fatalf("binary output: %q exit %d", out, code)
	}
	// Killed by a signal → 137.
	if _, _, code := p.run(nil, "capsule", "exec", id, "--", "sh", "-c", "kill -9 $$"); code != 137 {
		t.Fatalf("killed command: exit %d, want 137", code)
	}
	// Past its time limit → 124 and one line.
	start := time.Now()
	p.fails(t, 124, "wrenn: ", "capsule", "exec", "--timeout", "1", id, "--", "sleep", "30")
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("timed-out exec took %s", d)
	}
	// --json prints the API's answer and still mirrors the exit code.
	var res struct {
		Stdout   string `json:"stdout"`
		ExitCode int    `json:"exit_code"`
		Encoding string `json:"encoding"`
	}
	jout, _, code := p.run(nil, "--json", "capsule", "exec", id, "--", "sh", "-c", "echo j; exit 2")
	if err := json.Unmarshal([]byte(jout), &res); err != nil || code != 2 || res.Stdout != "j\n" || res.ExitCode != 2 || res.Encoding != "utf-8" {
		t.Fatalf("exec --json: %q exit %d (%v)", jout, code, err)
	}
	// A missing command is the API's error, one line.
	p.fails(t, 1, "wrenn: ", "capsule", "exec", id, "--", "/no/such/program")
	p.fails(t, 2, "--background", "capsule", "exec", "--tag", "x", id, "--", "true")
}

func testBackground(t *testing.T, p *platform, id string) {
	out := p.ok(t, "capsule", "exec", "--background", "--tag", "counter", id, "--",
		"sh", "-c", "for i in 1 2 3; do echo line$i; sleep 1; done; echo done >&2")
	fields := strings.Fields(out)
	if len(fields) != 2 || fields[1] != "counter" {
		t.Fatalf("background exec printed %q, want \"<pid> counter\"", out)
	}
	pid := fields[0]
	if _, err := strconv.Atoi(pid); err != nil {
		t.Fatalf("background pid %q", pid)
	}
	if ps := p.ok(t, "ps", id); !strings.Contains(ps, "counter") || !strings.Contains(ps, "running") {
		t.Fatalf("ps while running:\n%s", ps)
	}
	// logs -f follows until the process exits: stdout and stderr separately, exact bytes.
	out, errOut, code := p.run(nil, "logs", "-f", id, "counter")
	if out != "line1\nline2\nline3\n" || errOut != "done\n" || code != 0 {
		t.Fatalf("logs -f: stdout %q stderr %q exit %d", out, errOut, code)
	}
	var list struct {
		Processes []processJSON `json:"processes"`
	}
	p.okJSON(t, &list, "ps", "--all", id)
	found := false
	for _, pr := range list.Processes {
		if pr.Tag == "counter" {
			found = true
			if pr.Status != "exited" || pr.ExitCode == nil || *pr.ExitCode != 0 || strconv.Itoa(pr.PID) != pid {
				t.Fatalf("ps --all: %+v", pr)
			}
		}
	}
	if !found {
		t.Fatalf("ps --all --json lacks counter: %+v", list)
	}
	// Replay from an offset (bytes across both streams), by PID.
	if out, errOut, code := p.run(nil, "logs", "--offset", "6", id, pid); out != "line2\nline3\n" || errOut != "done\n" || code != 0 {
		t.Fatalf("logs --offset 6: stdout %q stderr %q exit %d", out, errOut, code)
	}
	// --json: one frame a line.
	jl := p.ok(t, "--json", "logs", id, "counter")
	sc := bufio.NewScanner(strings.NewReader(jl))
	var types []string
	for sc.Scan() {
		var fr struct{ Type string }
		if err := json.Unmarshal(sc.Bytes(), &fr); err != nil {
			t.Fatalf("logs --json line %q: %v", sc.Text(), err)
		}
		types = append(types, fr.Type)
	}
	if len(types) < 3 || types[0] != "start" || types[len(types)-1] != "exit" {
		t.Fatalf("logs --json frames %v", types)
	}

	// A running process: logs without -f prints what is there and returns.
	p.ok(t, "capsule", "exec", "-b", "--tag", "sleeper", id, "--", "sh", "-c", "echo started; exec sleep 300")
	eventually(t, 60*time.Second, "sleeper output", func() error {
		start := time.Now()
		out := p.ok(t, "logs", id, "sleeper")
		// Generous for a slow machine, well below the sleep a follow would wait for.
		if d := time.Since(start); d > 60*time.Second {
			t.Fatalf("logs of a running process took %s", d)
		}
		if out != "started\n" {
			return fmt.Errorf("logs: %q", out)
		}
		return nil
	})
	p.ok(t, "kill", "--signal", "SIGTERM", id, "sleeper")
	eventually(t, 60*time.Second, "sleeper exited", func() error {
		var list struct {
			Processes []processJSON `json:"processes"`
		}
		p.okJSON(t, &list, "ps", "-a", id)
		for _, pr := range list.Processes {
			if pr.Tag == "sleeper" && pr.Status == "exited" {
				return nil
			}
		}
		return fmt.Errorf("processes %+v", list.Processes)
	})
	p.fails(t, 1, "already exited", "kill", id, "sleeper")
	p.fails(t, 1, "not found", "kill", id, "no-such-tag")
	p.fails(t, 1, "not found", "logs", id, "no-such-tag")
	p.fails(t, 2, "--signal", "kill", "--signal", "SIGHUP", id, "sleeper")
}

func testFiles(t *testing.T, p *platform, id string) {
	dir := t.TempDir()
	data := make([]byte, 12<<20+12345)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	in := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.ok(t, "files", "cp", in, id+":/tmp/cli/sub/big.bin") // missing directories are created
	t.Logf("upload of %d MiB: %s", len(data)>>20, time.Since(start).Round(time.Millisecond))
	if out := p.ok(t, "capsule", "exec", id, "--", "sha256sum", "/tmp/cli/sub/big.bin"); !strings.HasPrefix(out, hex.EncodeToString(sum[:])) {
		t.Fatalf("sha256 in the capsule: %q, want %x", out, sum)
	}
	back := filepath.Join(dir, "back.bin")
	start = time.Now()
	p.ok(t, "files", "cp", id+":/tmp/cli/sub/big.bin", back)
	t.Logf("download of %d MiB: %s", len(data)>>20, time.Since(start).Round(time.Millisecond))
	if got, err := os.ReadFile(back); err != nil || sha256.Sum256(got) != sum {
		t.Fatalf("downloaded file differs (%d bytes, %v)", len(got), err)
	}
	// Into a local directory: the remote base name; into a remote directory ("/"): the local one.
	p.ok(t, "files", "cp", id+":/tmp/cli/sub/big.bin", dir)
	if fi, err := os.Stat(filepath.Join(dir, "big.bin")); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("download into a directory: %v", err)
	}
	small := filepath.Join(dir, "small.txt")
	if err := os.WriteFile(small, []byte("small\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.ok(t, "files", "cp", small, id+":/tmp/cli/")
	// Relative capsule paths are in the user's home, which `files ls` lists without a path.
	p.ok(t, "files", "cp", small, id+":rel.txt")
	if ls := p.ok(t, "files", "ls", id); !strings.Contains(ls, "rel.txt") {
		t.Fatalf("files ls of the home directory:\n%s", ls)
	}
	p.ok(t, "files", "rm", id, "rel.txt")
	// stdin and stdout.
	if out, errOut, code := p.run(strings.NewReader("from stdin\n"), "files", "cp", "-", id+":/tmp/cli/stdin.txt"); code != 0 {
		t.Fatalf("cp - : exit %d %s %s", code, out, errOut)
	}
	if out := p.ok(t, "files", "cp", id+":/tmp/cli/stdin.txt", "-"); out != "from stdin\n" {
		t.Fatalf("cp to stdout: %q", out)
	}
	var cp struct {
		Bytes int64 `json:"bytes"`
	}
	p.okJSON(t, &cp, "files", "cp", id+":/tmp/cli/small.txt", filepath.Join(dir, "small-back.txt"))
	if cp.Bytes != 6 {
		t.Fatalf("cp --json: %+v", cp)
	}

	// ls, mkdir, rm.
	ls := p.ok(t, "files", "ls", id, "/tmp/cli")
	for _, want := range []string{"sub/", "small.txt", "stdin.txt", "NAME"} {
		if !strings.Contains(ls, want) {
			t.Fatalf("files ls lacks %q:\n%s", want, ls)
		}
	}
	p.ok(t, "files", "mkdir", id, "/tmp/cli/newdir")
	var listing struct {
		Entries []struct {
			Name string `json:"name"`
			Type string `json:"type"`
			Size int64  `json:"size"`
		} `json:"entries"`
	}
	p.okJSON(t, &listing, "files", "ls", id, "/tmp/cli/sub")
	if len(listing.Entries) != 1 || listing.Entries[0].Name != "big.bin" || listing.Entries[0].Size != int64(len(data)) {
		t.Fatalf("files ls --json: %+v", listing)
	}
	p.okJSON(t, &listing, "files", "ls", id, "/tmp/cli")
	names := map[string]string{}
	for _, e := range listing.Entries {
		names[e.Name] = e.Type
	}
	if names["newdir"] != "directory" || names["small.txt"] != "file" {
		t.Fatalf("after mkdir: %v", names)
	}
	p.ok(t, "files", "rm", id, "/tmp/cli/newdir")
	p.ok(t, "files", "rm", id, "/tmp/cli/sub")
	ls = p.ok(t, "files", "ls", id, "/tmp/cli")
	if strings.Contains(ls, "newdir") || strings.Contains(ls, "sub/") {
		t.Fatalf("after rm:\n%s", ls)
	}

	// Failures: one line, and a failed download leaves no local file.
	missing := filepath.Join(dir, "missing.bin")
	p.fails(t, 1, "wrenn: ", "files", "cp", id+":/tmp/cli/no-such-file", missing)
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("failed download left %s (%v)", missing, err)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".missing.bin.wrenn-*")); len(ents) > 0 {
		t.Fatalf("failed download left %v", ents)
	}
	p.fails(t, 1, "no such file", "files", "cp", filepath.Join(dir, "no-such-file"), id+":/tmp/x")
	p.fails(t, 2, "ID:PATH", "files", "cp", in, filepath.Join(dir, "other"))
	p.fails(t, 2, "both", "files", "cp", id+":/a", id+":/b")
	p.fails(t, 1, "wrenn: ", "files", "ls", id, "/no/such/dir")
}

// terminal is a pseudo-terminal the test keeps both ends of (to inspect the CLI's terminal modes).
type terminal struct {
	ptmx, tty *os.File
	mu        sync.Mutex
	buf       bytes.Buffer
	done      chan struct{}
}

func newTerminal(t *testing.T, rows, cols uint16) *terminal {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	term := &terminal{ptmx: ptmx, tty: tty, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			term.mu.Lock()
			term.buf.Write(b[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { tty.Close(); ptmx.Close() })
	return term
}

func (term *terminal) output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.buf.String()
}

func (term *terminal) termios(t *testing.T) *unix.Termios {
	tio, err := unix.IoctlGetTermios(int(term.tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio
}

func (term *terminal) waitOutput(t *testing.T, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(term.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("terminal: %q not seen in %q", want, term.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (term *terminal) typeText(t *testing.T, s string) {
	t.Helper()
	if _, err := term.ptmx.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// testShell runs `capsule shell` on a pseudo-terminal: raw mode while it runs, the remote terminal
// gets the local size and follows a resize, output comes back, the exit code is the remote one and
// the terminal's modes are restored.
func testShell(t *testing.T, p *platform, id string) {
	term := newTerminal(t, 24, 100)
	before := term.termios(t)
	if before.Lflag&unix.ECHO == 0 || before.Lflag&unix.ICANON == 0 {
		t.Fatalf("the test terminal starts in raw mode: %+v", before)
	}
	cmd := exec.Command(p.wrenn, "capsule", "shell", "--cmd", "/bin/sh", id)
	cmd.Env = p.environ("TERM=xterm")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term.tty, term.tty, term.tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	eventually(t, 30*time.Second, "raw mode", func() error {
		if tio := term.termios(t); tio.Lflag&(unix.ECHO|unix.ICANON) != 0 {
			return fmt.Errorf("lflag %#x", tio.Lflag)
		}
		return nil
	})
	// The arithmetic keeps the expected text out of the echoed input.
	term.typeText(t, "echo size-$((1+1)) $(stty size) $(tty | cut -c1-8)\r")
	term.waitOutput(t, "size-2 24 100 /dev/pts", 30*time.Second)

	if err := pty.Setsize(term.ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "resize reaches the capsule", func() error {
		term.typeText(t, "echo resized-$((2+2)) $(stty size)\r")
		time.Sleep(300 * time.Millisecond)
		if !strings.Contains(term.output(), "resized-4 40 120") {
			return fmt.Errorf("output %q", term.output())
		}
		return nil
	})

	term.typeText(t, "echo bye-$((3+3)); exit 5\r")
	select {
	case <-exited:
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) || ee.ExitCode() != 5 {
			t.Fatalf("shell exit: %v, want exit status 5\noutput: %q", waitErr, term.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("shell did not exit after `exit 5`\noutput: %q", term.output())
	}
	term.waitOutput(t, "bye-6", 30*time.Second)
	after := term.termios(t)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag || after.Cflag != before.Cflag || after.Cc != before.Cc {
		t.Fatalf("terminal not restored:\nbefore %+v\nafter  %+v", before, after)
	}
}

// testShellPipe: without a terminal, piped input drives the shell; a named terminal left by a lost
// connection is reattached by tag.
func testShellPipe(t *testing.T, p *platform, id string) {
	out, errOut, code := p.run(strings.NewReader("echo piped-$((5+5))\nexit 4\n"), "capsule", "shell", "--cmd", "/bin/sh", id)
	if code != 4 || !strings.Contains(out, "piped-10") {
		t.Fatalf("piped shell: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	// End of input is Ctrl-D: the shell exits 0.
	if out, errOut, code := p.run(strings.NewReader("echo eof-$((1+2))\n"), "capsule", "shell", "--cmd", "/bin/sh", id); code != 0 || !strings.Contains(out, "eof-3") {
		t.Fatalf("shell until EOF: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}

	// A named terminal survives its client (SIGTERM) and is reattached by tag with its scrollback.
	cmd := exec.Command(p.wrenn, "capsule", "shell", "--cmd", "/bin/sh", "--tag", "keep", id)
	cmd.Env = p.environ()
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	var stdout, stderr syncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	fmt.Fprintf(stdinW, "echo kept-$((6+1))\n")
	eventually(t, 30*time.Second, "named shell output", func() error {
		if !strings.Contains(stdout.String(), "kept-7") {
			return fmt.Errorf("stdout %q", stdout.String())
		}
		return nil
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) || !strings.Contains(stderr.String(), "--tag keep") {
		t.Fatalf("interrupted named shell: %v, stderr %q", err, stderr.String())
	}
	out, errOut, code = p.run(strings.NewReader("exit 6\n"), "capsule", "shell", "--tag", "keep", id)
	if code != 6 || !strings.Contains(out, "kept-7") {
		t.Fatalf("reattach: exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func testSnapshot(t *testing.T, p *platform, id string) {
	p.ok(t, "capsule", "exec", id, "--", "sh", "-c", "echo from-snapshot > /root/marker")
	tmpl := "cli-" + testutil.RandomName("", 6)
	if out := p.ok(t, "snapshot", "--name", tmpl, id); out != tmpl+"\n" {
		t.Fatalf("snapshot printed %q, want %q", out, tmpl)
	}
	var c capsuleJSON
	p.okJSON(t, &c, "capsule", "get", id)
	if c.Status != "paused" {
		t.Fatalf("after snapshot: status %q, want paused", c.Status)
	}
	var ts []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Platform bool   `json:"platform"`
	}
	p.okJSON(t, &ts, "template", "ls")
	found := false
	for _, tp := range ts {
		if tp.Name == tmpl && tp.Type == "snapshot" && !tp.Platform {
			found = true
		}
	}
	if !found {
		t.Fatalf("template ls --json lacks %s: %+v", tmpl, ts)
	}
	if ls := p.ok(t, "template", "list"); !strings.Contains(ls, tmpl) || !strings.Contains(ls, "minimal") {
		t.Fatalf("template ls:\n%s", ls)
	}
	// Name taken → one line; --overwrite replaces it.
	p.fails(t, 1, "wrenn: ", "snapshot", "--name", tmpl, id)

	var from capsuleJSON
	p.okJSON(t, &from, "capsule", "create", "--template", tmpl)
	t.Cleanup(func() { p.run(nil, "capsule", "rm", from.ID) })
	if from.Status != "running" || from.Template != tmpl {
		t.Fatalf("capsule from the template: %+v", from)
	}
	if out := p.ok(t, "capsule", "exec", from.ID, "--", "cat", "/root/marker"); out != "from-snapshot\n" {
		t.Fatalf("marker in the capsule from the template: %q", out)
	}
	p.ok(t, "capsule", "rm", from.ID)
	var removed struct {
		Name string `json:"name"`
	}
	p.okJSON(t, &removed, "template", "rm", tmpl)
	if removed.Name != tmpl {
		t.Fatalf("template rm --json: %+v", removed)
	}
	if ls := p.ok(t, "template", "ls"); strings.Contains(ls, tmpl) {
		t.Fatalf("removed template still listed:\n%s", ls)
	}
	p.fails(t, 1, "not found", "template", "rm", tmpl)

	// The snapshot left the capsule paused: resume it.
	if out := p.ok(t, "capsule", "resume", id); out != id+" running\n" {
		t.Fatalf("resume printed %q", out)
	}
}

func testPauseResume(t *testing.T, p *platform, id string) {
	p.ok(t, "capsule", "exec", id, "--", "sh", "-c", "echo before-pause > /tmp/paused")
	var c capsuleJSON
	p.okJSON(t, &c, "capsule", "pause", id)
	if c.Status != "paused" {
		t.Fatalf("pause --json: %+v", c)
	}
	p.fails(t, 1, "not running", "capsule", "exec", id, "--", "true")
	p.fails(t, 1, "wrenn: ", "capsule", "pause", id)
	p.okJSON(t, &c, "capsule", "resume", id)
	if c.Status != "running" {
		t.Fatalf("resume --json: %+v", c)
	}
	if out := p.ok(t, "capsule", "exec", id, "--", "cat", "/tmp/paused"); out != "before-pause\n" {
		t.Fatalf("file after resume: %q", out)
	}
}

func testHosts(t *testing.T, p *platform) {
	ls := p.ok(t, "host", "ls")
	if !strings.Contains(ls, p.HostID) || !strings.Contains(ls, "online") {
		t.Fatalf("host ls:\n%s", ls)
	}
	out := p.ok(t, "host", "create")
	var hostID, token string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			switch {
			case f[0] == "ID":
				hostID = f[1]
			case strings.HasPrefix(line, "Registration token"):
				token = f[len(f)-1]
			}
		}
	}
	if !strings.HasPrefix(hostID, "host-") || len(token) != 64 {
		t.Fatalf("host create printed %q", out)
	}
	p.ok(t, "host", "rm", hostID)
	if ls := p.ok(t, "host", "ls"); strings.Contains(ls, hostID) {
		t.Fatalf("removed host still listed:\n%s", ls)
	}
	// The registered host runs a capsule: deleting it needs --force.
	p.fails(t, 1, "--force", "host", "rm", p.HostID)
	p.fails(t, 2, "--type", "host", "create", "--type", "cloud")

	// Host routes need the user login, not an API key.
	cfg, _ := profile.Load(p.config)
	key := cfg.Profiles["default"].APIKey
	r := p.runEnv([]string{"WRENN_CONFIG=" + filepath.Join(t.TempDir(), "none.json")}, nil, "--url", p.URL, "--api-key", key, "host", "ls")
	if r.code != 1 || !oneLine(r.stderr) || !strings.Contains(r.stderr, "wrenn login") {
		t.Fatalf("host ls with an API key only: exit %d stderr %q", r.code, r.stderr)
	}
	// …and an API key alone works for capsules.
	r = p.runEnv([]string{"WRENN_CONFIG=" + filepath.Join(t.TempDir(), "none.json"), "WRENN_URL=" + p.URL, "WRENN_API_KEY=" + key}, nil, "capsule", "ls")
	if r.code != 0 {
		t.Fatalf("capsule ls with WRENN_URL/WRENN_API_KEY: exit %d stderr %q", r.code, r.stderr)
	}
}

func testBadInput(t *testing.T, p *platform, id string) {
	p.fails(t, 1, "sandbox not found", "capsule", "get", "cl-"+strings.Repeat("0", 25))
	p.fails(t, 1, "sandbox not found", "capsule", "exec", "cl-"+strings.Repeat("0", 25), "--", "true")
	p.fails(t, 1, "invalid sandbox ID", "capsule", "get", "not-a-capsule")
	p.fails(t, 1, "template not found", "capsule", "create", "--template", "no-such-template")
	p.fails(t, 2, "unknown flag: --bogus", "capsule", "create", "--bogus")
	p.fails(t, 2, "invalid argument", "capsule", "create", "--vcpus", "many")
	p.fails(t, 2, "missing arguments", "capsule", "get")
	p.fails(t, 2, "unknown command", "capsule", "explode", id)
	p.fails(t, 2, "unknown command", "capsul")
	p.fails(t, 2, "--env", "capsule", "exec", "--env", "NOEQUALS", id, "--", "true")
	p.fails(t, 1, "invalid API key", "--api-key", "wrn_00000000000000000000000000000000", "capsule", "ls")
	p.fails(t, 1, "no profile", "--profile", "nope", "capsule", "ls")
}

// TestCLIWithoutServer: usage errors and an unreachable control plane, no platform needed.
func TestCLIWithoutServer(t *testing.T) {
	dir := t.TempDir()
	p := &platform{t: t, wrenn: testutil.BuildBinary(t, "./cmd/wrenn"), config: filepath.Join(dir, "config.json"), home: dir}
	port := testutil.FreePort(t) // nothing listens there
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	msg := p.fails(t, 1, "cannot reach the control plane at "+url+": ", "--url", url, "--api-key", "wrn_x", "capsule", "ls")
	if !strings.Contains(msg, "connection refused") {
		t.Fatalf("unreachable: %q", msg)
	}
	p.fails(t, 1, "cannot reach the control plane at "+url, "login", "--url", url, "--email", "a@b.c", "--password", "x")
	p.fails(t, 1, "no profile", "capsule", "ls")
	p.fails(t, 2, "unknown flag", "--bogus")
	p.fails(t, 2, "invalid control-plane URL", "--url", "ftp://x", "--api-key", "k", "capsule", "ls")
	p.fails(t, 2, "--url is required", "login", "--email", "a@b.c", "--password", "x")
	out, errOut, code := p.run(nil, "--help")
	if code != 0 || errOut != "" || !strings.Contains(out, "capsule") {
		t.Fatalf("--help: exit %d %q %q", code, out, errOut)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
