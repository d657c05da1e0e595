// Command wrenn is Wrenn's command line: capsules, their processes, files and terminals, templates,
// hosts, and `wrenn up` (a whole single-node platform on this machine).
package main

import (
	"os"

	"github.com/wrenn/wrenn/internal/cli"
	"github.com/wrenn/wrenn/internal/cli/up"
)

// release is set at build time (-X main.release=…).
var release = "dev"

func main() {
	root := cli.NewRoot()
	root.Version = release
	root.AddCommand(up.NewCommand())
	os.Exit(cli.Execute(root))
}
