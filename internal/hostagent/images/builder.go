package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// builder is what a recipe's build step gets: the rootfs being filled and
// ways to run commands against it. File operations go through an os.Root,
// so a symlink inside the image can never redirect a write to the host.
type builder struct {
	dir    string // rootfs path on the host
	root   *os.Root
	output io.Writer // build log: commands' stdout and stderr
}

// chrootEnv is the environment of commands run inside the image.
var chrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"LC_ALL=C",
	"DEBIAN_FRONTEND=noninteractive",
}

// run runs a host program. Commands run in a private mount namespace, so
// whatever they mount (debootstrap mounts /proc and /sys in the target)
// disappears with them even if they are killed, and never shows on the host.
func (b *builder) run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	return b.exec(cmd)
}

// chroot runs argv[0] (a path inside the image) with the image as root.
func (b *builder) chroot(ctx context.Context, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// argv[0] is absolute, so exec does no host lookup: the kernel resolves
	// it after the chroot.
	cmd.Env = chrootEnv
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: b.dir}
	return b.exec(cmd)
}

func (b *builder) exec(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
	// Own process group, killed as a whole on cancel: debootstrap's dpkg and
	// maintainer scripts must not outlive it. Pdeathsig covers an agent
	// crash.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Stdin = nil
	tail := &tailBuffer{max: 4096}
	out := io.MultiWriter(b.output, tail)
	cmd.Stdout, cmd.Stderr = out, out
	fmt.Fprintf(b.output, "$ %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, tail.String())
	}
	return nil
}

// mkdir creates dir (relative to the rootfs) and sets its mode and owner
// exactly, whether or not it existed.
func (b *builder) mkdir(dir string, mode fs.FileMode, uid, gid int) error {
	if err := b.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	return b.own(dir, mode, uid, gid)
}

// writeFile replaces name (relative to the rootfs) with a regular file.
// Whatever was there, a symlink included, is removed first.
func (b *builder) writeFile(name, content string, mode fs.FileMode) error {
	if err := b.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	f, err := b.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return b.own(name, mode, 0, 0)
}

// symlink makes name a symlink to target, replacing a missing or empty
// directory or an existing link.
func (b *builder) symlink(target, name string) error {
	if err := b.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	if err := b.root.Symlink(target, name); err != nil {
		return fmt.Errorf("symlink %s: %w", name, err)
	}
	return nil
}

// own sets mode (umask-free, with sticky bits) and owner of name.
func (b *builder) own(name string, mode fs.FileMode, uid, gid int) error {
	if err := b.root.Chown(name, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", name, err)
	}
	if err := b.root.Chmod(name, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	return nil
}

// copyFile copies the host file src to name in the rootfs.
func (b *builder) copyFile(src, name string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := b.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, name, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, name, err)
	}
	return b.own(name, mode, 0, 0)
}

// etcFiles are written into every image: the host's identity must not leak
// in (debootstrap copies the host's resolv.conf and hostname), and the
// capsule's network is set up by the host agent, which owns DNS.
var etcFiles = map[string]string{
	"etc/hostname": "wrenn\n",
	"etc/hosts": "127.0.0.1\tlocalhost\n" +
		"127.0.1.1\twrenn\n" +
		"::1\tlocalhost ip6-localhost ip6-loopback\n",
	"etc/resolv.conf": "# DNS servers are provided by the Wrenn host agent when a capsule starts.\n",
}

func (b *builder) writeEtc() error {
	for name, content := range etcFiles {
		if err := b.writeFile(name, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.buf)) }
