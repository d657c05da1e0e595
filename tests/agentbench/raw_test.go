package agentbench

import (
	"testing"

	"github.com/wrenn/wrenn/internal/testutil/rawrunsc"
)

// newRawHost runs raw runsc capsules of s's image: the same image, envd,
// flags, OCI configuration and limits as the agent's gVisor runtime
// (internal/testutil/rawrunsc).
func newRawHost(b *testing.B, s setup) *rawrunsc.Host {
	b.Helper()
	return rawrunsc.New(b, rawrunsc.Config{Runsc: s.runsc, Envd: s.envd, Image: s.image.Path, ImageName: imageName, DiskMB: diskMB})
}
