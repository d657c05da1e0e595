package images

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// base is the default capsule image: Debian bookworm (debootstrap minbase
// from Debian's default mirror) with a shell, Python, git and networking
// tools, and user (1000) with passwordless sudo.
var base = &recipe{
	name:     "base",
	version:  1,
	packages: basePackages,
	params: map[string]string{
		"suite":   baseSuite,
		"variant": baseVariant,
		"layout":  "merged-usr",
		"user":    "user:1000:/home/user:/bin/bash",
		"sudoers": baseSudoers,
	},
	build: buildBase,
}

const (
	baseSuite   = "bookworm"
	baseVariant = "minbase"
	baseSudoers = "user ALL=(ALL:ALL) NOPASSWD: ALL\n"
)

var basePackages = []string{
	"bash", "coreutils", "sudo", "curl", "ca-certificates",
	"python3", "git", "procps", "iproute2",
}

func buildBase(ctx context.Context, b *builder) error {
	// No mirror argument: debootstrap's built-in default is used.
	err := b.run(ctx, hostEnv(), "debootstrap",
		"--variant="+baseVariant, "--merged-usr",
		"--include="+strings.Join(basePackages, ","),
		baseSuite, b.dir)
	if err != nil {
		return fmt.Errorf("debootstrap: %w", err)
	}
	if err := b.chroot(ctx, "/usr/sbin/useradd", "--create-home", "--uid", "1000",
		"--user-group", "--shell", "/bin/bash", "user"); err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	if err := b.writeFile("etc/sudoers.d/wrenn", baseSudoers, 0o440); err != nil {
		return err
	}
	if err := b.chroot(ctx, "/usr/sbin/visudo", "--check"); err != nil {
		return fmt.Errorf("check sudoers: %w", err)
	}
	if err := b.mkdir(".wrenn", 0o755, 0, 0); err != nil {
		return err
	}
	if err := b.writeEtc(); err != nil {
		return err
	}
	if err := b.chroot(ctx, "/usr/bin/apt-get", "clean"); err != nil {
		return fmt.Errorf("apt-get clean: %w", err)
	}
	// Package lists are stale by the time a capsule runs; `apt-get update`
	// fetches fresh ones.
	return b.clearDir("var/lib/apt/lists", "partial", "lock")
}

// hostEnv is the environment of host tools: a fixed base plus the host's
// proxy settings, which debootstrap's downloads honour.
func hostEnv() []string {
	env := slices.Clone(chrootEnv)
	for _, k := range []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// clearDir removes the entries of dir (relative to the rootfs) except keep.
func (b *builder) clearDir(dir string, keep ...string) error {
	d, err := b.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	for _, n := range names {
		if slices.Contains(keep, n) {
			continue
		}
		if err := b.root.RemoveAll(dir + "/" + n); err != nil {
			return fmt.Errorf("clear %s: %w", dir, err)
		}
	}
	return nil
}
