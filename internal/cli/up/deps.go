package up

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// binaries are the programs `wrenn up` runs, found beside its own executable (`make build` puts them
// all in bin/), and the checkout's scripts directory (bin/../scripts) when there is one.
type binaries struct {
	cp, agent, envd string
	scripts         string // "" outside a checkout
}

func findBinaries() (binaries, error) {
	exe, err := os.Executable()
	if err != nil {
		return binaries{}, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return binaries{}, err
	}
	dir := filepath.Dir(exe)
	b := binaries{
		cp:    filepath.Join(dir, "wrenn-cp"),
		agent: filepath.Join(dir, "wrenn-agent"),
		envd:  filepath.Join(dir, "envd"),
	}
	for _, p := range []string{b.cp, b.agent, b.envd} {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return binaries{}, fmt.Errorf("%s not found beside %s: build every binary into one directory (make build)", filepath.Base(p), exe)
		}
	}
	scripts := filepath.Join(filepath.Dir(dir), "scripts")
	if _, err := os.Stat(filepath.Join(scripts, "install-deps.sh")); err == nil {
		b.scripts = scripts
	}
	return b, nil
}

// installDeps runs scripts/install-deps.sh: missing OS packages are installed (apt), the rest is a
// quick check. Output goes to log.
func installDeps(ctx context.Context, b binaries, log io.Writer) error {
	if b.scripts == "" {
		return fmt.Errorf("scripts/install-deps.sh not found beside the binaries' directory: run wrenn up from a checkout's bin/ (make run), or install the OS packages yourself and pass --skip-deps")
	}
	script := filepath.Join(b.scripts, "install-deps.sh")
	cmd := exec.CommandContext(ctx, script)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", script, err)
	}
	return nil
}

// runscPath returns $WRENN_RUNSC, or the static runsc scripts/install-runsc.sh builds (once; later
// runs find it in its cache and only print its path). Build output goes to log.
func runscPath(ctx context.Context, b binaries, log io.Writer) (string, error) {
	if p := os.Getenv("WRENN_RUNSC"); p != "" {
		return p, nil
	}
	if b.scripts == "" {
		return "", fmt.Errorf("scripts/install-runsc.sh not found beside the binaries' directory: run wrenn up from a checkout's bin/ (make run), or set WRENN_RUNSC to a static runsc binary")
	}
	script := filepath.Join(b.scripts, "install-runsc.sh")
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, script)
	cmd.Stdout, cmd.Stderr = &out, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	p := strings.TrimSpace(out.String())
	if p == "" {
		return "", fmt.Errorf("%s printed no path", script)
	}
	return p, nil
}
