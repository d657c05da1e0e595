package network

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Set names in the table. Both hold "host link . capsule address" pairs:
// keying on the pair, not the address alone, stops a capsule from spoofing
// a neighbour's address.
const (
	setCapsules = "capsules" // every capsule
	setInternet = "internet" // capsules allowed to reach the outside
)

// chainEgress holds the destination rules of capsules with internet access;
// it is rebuilt on its own when the host's addresses change.
const chainEgress = "capsule-egress"

// privateRanges are the IPv4 destinations no capsule reaches, internet
// access or not (docs/security.md, "Capsule egress"): private, shared,
// loopback, link-local (cloud metadata at 169.254.169.254), "this network",
// IETF protocol assignments, benchmarking, multicast and reserved space.
// The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24)
// are not among them: test networks stand in for the internet with them.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

var elemType = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)

// firewall is the manager's nftables table:
//
//	table inet <prefix> {
//	  set capsules { type ifname . ipv4_addr }
//	  set internet { type ifname . ipv4_addr }
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    iifname "<prefix>h*" jump capsule-forward
//	    oifname "<prefix>h*" ct state established,related accept
//	    oifname "<prefix>h*" drop }
//	  chain capsule-forward {
//	    meta nfproto != ipv4 drop
//	    iifname . ip saddr != @capsules drop
//	    ip daddr <subnet> drop
//	    iifname . ip saddr != @internet drop
//	    jump capsule-egress
//	    accept }
//	  chain capsule-egress {
//	    ip daddr <dns> udp dport 53 accept       (each DNS server)
//	    ip daddr <dns> tcp dport 53 accept
//	    ip daddr <allowed> accept                (each -egress-allow prefix)
//	    ip daddr <private> drop                  (privateRanges)
//	    ip daddr <host address or subnet> drop } (read from the host, kept current)
//	  chain input { type filter hook input priority filter; policy accept;
//	    iifname "<prefix>h*" jump capsule-input }
//	  chain capsule-input {
//	    meta nfproto != ipv4 drop
//	    iifname . ip saddr != @capsules drop
//	    ct state established,related accept
//	    iifname . ip saddr != @internet drop
//	    ip daddr <dns> udp dport 53 accept       (a DNS server on the host)
//	    ip daddr <dns> tcp dport 53 accept
//	    drop }
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    meta nfproto ipv4 ip saddr <subnet> oifname != "<prefix>h*" masquerade }
//	}
//
// The base chains keep policy accept and match capsule links explicitly: a
// packet any base chain drops is dropped, so a drop policy here would stop
// every other forwarded packet of the host (other namespaces, containers).
// Capsule packets are checked on every packet, not only the first of a
// connection, so revoking internet access also cuts open connections.
type firewall struct {
	table      *nftables.Table
	linkPrefix string
	subnet     netip.Prefix
	capsules   *nftables.Set
	internet   *nftables.Set
	dns        []netip.Addr   // DNS servers capsules are given (port 53 open)
	allow      []netip.Prefix // operator-allowed destinations (-egress-allow)

	// mu serialises rebuilding the rules (install, refresh).
	mu sync.Mutex
}

func newFirewall(table, linkPrefix string, subnet netip.Prefix, dns []netip.Addr, allow []netip.Prefix) *firewall {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	set := func(name string) *nftables.Set {
		return &nftables.Set{Table: t, Name: name, KeyType: elemType, Concatenation: true}
	}
	return &firewall{
		table:      t,
		linkPrefix: linkPrefix,
		subnet:     subnet,
		capsules:   set(setCapsules),
		internet:   set(setInternet),
		dns:        dns,
		allow:      allow,
	}
}

// install creates the table or, if it exists, replaces its rules while
// keeping the set elements of running capsules, in one transaction.
// hostNets are the host's own addresses and attached subnets.
func (f *firewall) install(hostNets []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.AddTable(f.table)
	c.FlushTable(f.table)
	for _, s := range []*nftables.Set{f.capsules, f.internet} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	accept := nftables.ChainPolicyAccept
	capFwd := c.AddChain(&nftables.Chain{Name: "capsule-forward", Table: f.table})
	capIn := c.AddChain(&nftables.Chain{Name: "capsule-input", Table: f.table})
	egress := c.AddChain(&nftables.Chain{Name: chainEgress, Table: f.table})
	fwd := c.AddChain(&nftables.Chain{
		Name: "forward", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	in := c.AddChain(&nftables.Chain{
		Name: "input", Table: f.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	post := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: f.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept,
	})

	rules := map[*nftables.Chain][][]expr.Any{
		fwd: {
			join(f.ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq), jump(capFwd.Name)),
			join(f.ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq), ctReply(), verdict(expr.VerdictAccept)),
			join(f.ifname(expr.MetaKeyOIFNAME, expr.CmpOpEq), verdict(expr.VerdictDrop)),
		},
		capFwd: {
			join(notIPv4(), verdict(expr.VerdictDrop)),
			join(f.lookup(f.capsules, true), verdict(expr.VerdictDrop)),
			join(inPrefix(16, f.subnet), verdict(expr.VerdictDrop)),
			join(f.lookup(f.internet, true), verdict(expr.VerdictDrop)),
			jump(egress.Name),
			verdict(expr.VerdictAccept),
		},
		egress: f.egressRules(hostNets),
		in: {
			join(f.ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq), jump(capIn.Name)),
		},
		capIn: slices.Concat(
			[][]expr.Any{
				join(notIPv4(), verdict(expr.VerdictDrop)),
				join(f.lookup(f.capsules, true), verdict(expr.VerdictDrop)),
				join(ctReply(), verdict(expr.VerdictAccept)),
				join(f.lookup(f.internet, true), verdict(expr.VerdictDrop)),
			},
			f.dnsRules(), // a DNS server on the host itself
			[][]expr.Any{verdict(expr.VerdictDrop)},
		),
		post: {
			join(inPrefix(12, f.subnet), f.ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq), []expr.Any{&expr.Masq{}}),
		},
	}
	for _, ch := range []*nftables.Chain{fwd, capFwd, egress, in, capIn, post} {
		for _, exprs := range rules[ch] {
			c.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: exprs})
		}
	}
	return c.Flush()
}

// refresh rebuilds the capsule-egress chain for new host addresses, in one
// transaction: no packet sees the chain half built.
func (f *firewall) refresh(hostNets []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := nftables.New()
	if err != nil {
		return err
	}
	egress := &nftables.Chain{Name: chainEgress, Table: f.table}
	c.FlushChain(egress)
	for _, exprs := range f.egressRules(hostNets) {
		c.AddRule(&nftables.Rule{Table: f.table, Chain: egress, Exprs: exprs})
	}
	return c.Flush()
}

// egressRules are the rules of capsule-egress: DNS and the operator's
// allow-list first, then the private ranges and the host's own networks.
func (f *firewall) egressRules(hostNets []netip.Prefix) [][]expr.Any {
	rules := f.dnsRules()
	for _, p := range f.allow {
		rules = append(rules, join(inPrefix(16, p), verdict(expr.VerdictAccept)))
	}
	for _, p := range append(slices.Clone(privateRanges), hostNets...) {
		rules = append(rules, join(inPrefix(16, p), verdict(expr.VerdictDrop)))
	}
	return rules
}

// dnsRules accept TCP and UDP to port 53 of each DNS server.
func (f *firewall) dnsRules() [][]expr.Any {
	var rules [][]expr.Any
	for _, d := range f.dns {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			rules = append(rules, join(inPrefix(16, netip.PrefixFrom(d, 32)), dport(proto, 53), verdict(expr.VerdictAccept)))
		}
	}
	return rules
}

// remove deletes the table with its chains, rules and sets.
func (f *firewall) remove() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(f.table)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// element is a set element: a capsule's host link and address.
type element struct {
	ifname string
	addr   netip.Addr
}

func (e element) key() []byte {
	k := make([]byte, elemType.Bytes)
	copy(k, e.ifname)
	a := e.addr.As4()
	copy(k[16:], a[:])
	return k
}

func parseElement(k []byte) (element, bool) {
	if len(k) != int(elemType.Bytes) {
		return element{}, false
	}
	name, _, _ := bytes.Cut(k[:16], []byte{0})
	return element{ifname: string(name), addr: netip.AddrFrom4([4]byte(k[16:20]))}, true
}

// add adds elements to s; adding an element that is there is not an error.
func (f *firewall) add(s *nftables.Set, elems ...element) error {
	if len(elems) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	vals := make([]nftables.SetElement, len(elems))
	for i, e := range elems {
		vals[i] = nftables.SetElement{Key: e.key()}
	}
	if err := c.SetAddElements(s, vals); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add to set %s: %w", s.Name, err)
	}
	return nil
}

// elements lists the elements of s.
func (f *firewall) elements(s *nftables.Set) ([]element, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	// GetSetElements loses the errno, GetSetByName keeps it.
	if _, err := c.GetSetByName(s.Table, s.Name); errors.Is(err, unix.ENOENT) {
		return nil, nil // no table (Close ran): nothing to list
	}
	vals, err := c.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("list set %s: %w", s.Name, err)
	}
	elems := make([]element, 0, len(vals))
	for _, v := range vals {
		if e, ok := parseElement(v.Key); ok {
			elems = append(elems, e)
		}
	}
	return elems, nil
}

// contains reports whether s holds e.
func (f *firewall) contains(s *nftables.Set, e element) (bool, error) {
	elems, err := f.elements(s)
	if err != nil {
		return false, err
	}
	for _, x := range elems {
		if x == e {
			return true, nil
		}
	}
	return false, nil
}

// purge deletes the elements of sets that drop selects. The caller holds
// Manager.mu, so nothing else deletes elements meanwhile.
func (f *firewall) purge(sets []*nftables.Set, drop func(element) bool) ([]element, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, err
	}
	var dropped []element
	for _, s := range sets {
		elems, err := f.elements(s)
		if err != nil {
			return nil, err
		}
		var vals []nftables.SetElement
		for _, e := range elems {
			if drop(e) {
				vals = append(vals, nftables.SetElement{Key: e.key()})
				dropped = append(dropped, e)
			}
		}
		if len(vals) > 0 {
			if err := c.SetDeleteElements(s, vals); err != nil {
				return nil, err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("delete set elements: %w", err)
	}
	return dropped, nil
}

// ifname matches interfaces whose name starts (op Eq) or does not start
// (op Neq) with the capsule host link prefix, like iifname "wrnh*".
func (f *firewall) ifname(key expr.MetaKey, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(f.linkPrefix)},
	}
}

// lookup matches "iifname . ip saddr @s" (or != @s when invert).
// The interface name fills register 1 (16 bytes), the address follows it
// in register 2, and the lookup reads the 20-byte concatenation.
func (f *firewall) lookup(s *nftables.Set, invert bool) []expr.Any {
	return join(isIPv4(), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: invert},
	})
}

// inPrefix matches the IPv4 source (offset 12) or destination (offset 16)
// address against p. Payload matches start with the protocol check so
// `nft list` shows them as ip saddr/daddr.
func inPrefix(offset uint32, p netip.Prefix) []expr.Any {
	var mask [4]byte
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	network := p.Masked().Addr().As4()
	return join(isIPv4(), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask[:], Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: network[:]},
	})
}

// dport matches the transport protocol proto and destination port port.
func dport(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func isIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

func notIPv4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ctReply matches ct state established,related.
func ctReply() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{
			SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  make([]byte, 4),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

func join(parts ...[]expr.Any) []expr.Any {
	var all []expr.Any
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}
