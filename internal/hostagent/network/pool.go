package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// maxIfName is the longest interface name Linux accepts (IFNAMSIZ - 1).
const maxIfName = 15

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	idRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
)

// pool splits an IPv4 subnet into /30 slots: slot i holds the network
// base+4i, the host side base+4i+1 and the capsule base+4i+2.
type pool struct {
	subnet netip.Prefix
	base   uint32
	size   int
}

func newPool(subnet netip.Prefix) (pool, error) {
	if !subnet.Addr().Is4() {
		return pool{}, fmt.Errorf("capsule subnet %s: not IPv4", subnet)
	}
	if subnet != subnet.Masked() {
		return pool{}, fmt.Errorf("capsule subnet %s: host bits set (want %s)", subnet, subnet.Masked())
	}
	if subnet.Bits() > 30 || subnet.Bits() < 8 {
		return pool{}, fmt.Errorf("capsule subnet %s: prefix length must be 8..30", subnet)
	}
	a := subnet.Addr().As4()
	return pool{subnet: subnet, base: binary.BigEndian.Uint32(a[:]), size: 1 << (30 - subnet.Bits())}, nil
}

func (p pool) addr(slot, host int) netip.Addr {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], p.base+uint32(slot)*4+uint32(host))
	return netip.AddrFrom4(a)
}

// hostIP is the host end of slot, the capsule's gateway.
func (p pool) hostIP(slot int) netip.Addr { return p.addr(slot, 1) }

// capsuleIP is the capsule end of slot.
func (p pool) capsuleIP(slot int) netip.Addr { return p.addr(slot, 2) }

// slotOf returns the slot holding a, if a is in the subnet.
func (p pool) slotOf(a netip.Addr) (int, bool) {
	if !a.Is4() || !p.subnet.Contains(a) {
		return 0, false
	}
	b := a.As4()
	return int((binary.BigEndian.Uint32(b[:]) - p.base) / 4), true
}

// hostIfPrefix starts the name of every capsule host link.
func hostIfPrefix(prefix string) string { return prefix + "h" }

// hostIfName names the host end of slot's veth pair, e.g. "wrnh12".
func hostIfName(prefix string, slot int) string {
	return hostIfPrefix(prefix) + strconv.Itoa(slot)
}

// parseHostIf returns the slot of a host link name made by hostIfName.
func (p pool) parseHostIf(prefix, name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, hostIfPrefix(prefix))
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	slot, err := strconv.Atoi(digits)
	if err != nil || slot >= p.size {
		return 0, false
	}
	return slot, true
}

// netnsName names a capsule's namespace.
func netnsName(prefix, id string) string { return prefix + "-" + id }

func checkPrefix(prefix string, slots int) error {
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("network prefix %q: want lowercase letters and digits, starting with a letter", prefix)
	}
	if longest := hostIfName(prefix, slots-1); len(longest) > maxIfName {
		return fmt.Errorf("network prefix %q: host link %s would exceed %d characters", prefix, longest, maxIfName)
	}
	return nil
}

func checkID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("capsule id %q: want 1-128 letters, digits, '.', '_' or '-'", id)
	}
	return nil
}
