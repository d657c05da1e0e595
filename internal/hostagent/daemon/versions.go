package daemon

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"os/exec"
	"strings"
	"time"
)

// runscModule is the module runsc is built from.
const runscModule = "gvisor.dev/gvisor"

// runscVersion reports the version of the runsc binary at path: what
// `runsc --version` prints, or, for binaries built with `go install` (which
// print VERSION_MISSING, as scripts/install-runsc.sh builds them), the
// gvisor.dev/gvisor module version recorded in the binary. Empty when
// neither tells.
func runscVersion(ctx context.Context, path string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "--version").Output(); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(out))
		if sc.Scan() {
			if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "runsc version "); ok && v != "" && v != "VERSION_MISSING" {
				return v
			}
		}
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return ""
	}
	if bi.Main.Path == runscModule && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == runscModule && d.Version != "" {
			return d.Version
		}
	}
	return ""
}
