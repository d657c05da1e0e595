package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wrenn/wrenn/internal/testutil"
)

// TestBase builds the base image with debootstrap from Debian's mirror
// (about 100 MB of downloads, minutes), so it runs only when asked:
// WRENN_TEST_DEBOOTSTRAP=1.
func TestBase(t *testing.T) {
	if os.Getenv("WRENN_TEST_DEBOOTSTRAP") != "1" {
		t.Skip("downloads Debian packages: set WRENN_TEST_DEBOOTSTRAP=1 to run")
	}
	testutil.RequireRoot(t)
	s := newStore(t, t.TempDir())

	start := time.Now()
	img, err := s.Ensure(t.Context(), "base")
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	t.Logf("built base in %v: %d MB", time.Since(start).Round(time.Second), list[0].SizeBytes>>20)

	checks := []struct{ argv, want string }{
		{"python3 -c 'print(1)'", "1"},
		{"sudo -n -u user true && echo ok", "ok"},
		{"sudo -n -u user sudo -n id -u", "0"},
		{"id -u user; id -g user", "1000\n1000"},
		{"getent passwd user | cut -d: -f6,7", "/home/user:/bin/bash"},
		{"test -d /.wrenn && test -d /home/user && echo ok", "ok"},
		{"command -v bash curl git ps ip python3", "/usr/bin/bash\n/usr/bin/curl\n/usr/bin/git\n/usr/bin/ps\n/usr/sbin/ip\n/usr/bin/python3"},
		{"test -s /etc/ssl/certs/ca-certificates.crt && echo ok", "ok"},
		{"cat /etc/hostname", "wrenn"},
		{"ls /var/lib/apt/lists /var/cache/apt/archives | grep -c -e '\\.deb$' -e '_Packages$' || true", "0"},
	}
	for _, c := range checks {
		if got := strings.TrimSpace(runIn(t, img.Path, "/bin/bash", "-c", c.argv)); got != c.want {
			t.Errorf("%s = %q, want %q", c.argv, got, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(img.Path, "etc/sudoers.d/wrenn")); err != nil {
		t.Error(err)
	}
}
