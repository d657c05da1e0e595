package metrics

import (
	"context"
	"fmt"

	"github.com/google/nftables"

	"github.com/wrenn/wrenn/internal/telemetry"
)

// ipForward is the sysctl capsule traffic to the outside needs.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

// ReadyConfig names what the agent's readiness checks look at.
type ReadyConfig struct {
	Runsc    string // the runsc binary
	StateDir string // runsc's --root
	NetTable string // the nftables inet table of the capsule network (the -net-prefix)
}

// ReadyChecks returns the agent's readiness conditions: "runtime" (runsc is an executable file and
// its state directory exists) and "network" (IPv4 forwarding is on and the capsule firewall table is
// installed). Add gates of your own (startup resume) beside them.
func ReadyChecks(cfg ReadyConfig) []telemetry.Check {
	return []telemetry.Check{
		{Name: "runtime", Fn: telemetry.All(telemetry.Executable(cfg.Runsc), telemetry.Dir(cfg.StateDir))},
		{Name: "network", Fn: telemetry.All(telemetry.FileHolds(ipForward, "1"), nftTable(cfg.NetTable))},
	}
}

// nftTable checks that the inet table name exists.
func nftTable(name string) func(context.Context) error {
	return func(context.Context) error {
		c, err := nftables.New()
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		defer c.CloseLasting()
		if _, err := c.ListTableOfFamily(name, nftables.TableFamilyINet); err != nil {
			return fmt.Errorf("nftables table inet %s: %w", name, err)
		}
		return nil
	}
}
