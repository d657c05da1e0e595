package images

import (
	"context"
	"fmt"
	"io/fs"
)

// hostBusybox is the static busybox of Debian's busybox-static package.
const hostBusybox = "/bin/busybox"

// minimal is a tiny busybox image for fast tests: a merged-/usr layout like
// Debian's, busybox with its applet symlinks, root and user (1000).
var minimal = &recipe{
	name:    "minimal",
	version: 1,
	params: map[string]string{
		"layout": "merged-usr",
		"users":  "root:0:/root:/bin/sh user:1000:/home/user:/bin/sh",
	},
	inputs: []string{hostBusybox},
	build:  buildMinimal,
}

const (
	minimalPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"user:x:1000:1000:user:/home/user:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	minimalGroup = "root:x:0:\n" +
		"user:x:1000:\n" +
		"nogroup:x:65534:\n"
	// Passwords are locked: people get in through envd, never by login.
	minimalShadow = "root:*:19000:0:99999:7:::\n" +
		"user:*:19000:0:99999:7:::\n" +
		"nobody:*:19000:0:99999:7:::\n"
)

func buildMinimal(ctx context.Context, b *builder) error {
	dirs := []struct {
		name     string
		mode     fs.FileMode
		uid, gid int
	}{
		{"usr/bin", 0o755, 0, 0},
		{"usr/sbin", 0o755, 0, 0},
		{"usr/local/bin", 0o755, 0, 0},
		{"etc", 0o755, 0, 0},
		{"root", 0o700, 0, 0},
		{"home/user", 0o755, 1000, 1000},
		{"tmp", fs.ModeSticky | 0o777, 0, 0},
		{"var/tmp", fs.ModeSticky | 0o777, 0, 0},
		{"proc", 0o555, 0, 0},
		{"sys", 0o555, 0, 0},
		{"dev", 0o755, 0, 0},
		{"run", 0o755, 0, 0},
		{".wrenn", 0o755, 0, 0},
	}
	for _, d := range dirs {
		if err := b.mkdir(d.name, d.mode, d.uid, d.gid); err != nil {
			return err
		}
	}
	for _, l := range [][2]string{{"usr/bin", "bin"}, {"usr/sbin", "sbin"}} {
		if err := b.symlink(l[0], l[1]); err != nil {
			return err
		}
	}
	if err := b.copyFile(hostBusybox, "usr/bin/busybox", 0o755); err != nil {
		return err
	}
	// Run inside the image with an absolute argv[0]: without /proc there,
	// busybox links its applets to argv[0], /bin/busybox.
	if err := b.chroot(ctx, "/bin/busybox", "--install", "-s"); err != nil {
		return fmt.Errorf("install busybox applets: %w", err)
	}
	files := []struct {
		name, content string
		mode          fs.FileMode
	}{
		{"etc/passwd", minimalPasswd, 0o644},
		{"etc/group", minimalGroup, 0o644},
		{"etc/shadow", minimalShadow, 0o600},
	}
	for _, f := range files {
		if err := b.writeFile(f.name, f.content, f.mode); err != nil {
			return err
		}
	}
	return b.writeEtc()
}
