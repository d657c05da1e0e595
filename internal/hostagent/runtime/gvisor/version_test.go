package gvisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wrenn/wrenn/internal/testutil"
)

// The install script and the agent's default must name the same runsc.
func TestRunscVersionMatchesInstallScript(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testutil.ModuleRoot(t), "scripts", "install-runsc.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "version="+RunscVersion+"\n") {
		t.Fatalf("scripts/install-runsc.sh does not pin %s", RunscVersion)
	}
}
