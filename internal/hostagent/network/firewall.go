package network

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"

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

// linkLocal covers cloud metadata services (169.254.169.254) and the rest
// of IPv4 link-local space, which capsules must never reach.
var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

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
//	    ip daddr 169.254.0.0/16 drop
//	    iifname . ip saddr @internet accept
//	    drop }
//	  chain input { type filter hook input priority filter; policy accept;
//	    iifname "<prefix>h*" jump capsule-input }
//	  chain capsule-input {
//	    meta nfproto != ipv4 drop
//	    iifname . ip saddr != @capsules drop
//	    ct state established,related accept
//	    drop }
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    meta nfproto ipv4 ip saddr <subnet> oifname != "<prefix>h*" masquerade }
//	}
//
// Capsule packets are checked on every packet, not only the first of a
// connection, so revoking internet access also cuts open connections.
type firewall struct {
	table      *nftables.Table
	linkPrefix string
	subnet     netip.Prefix
	capsules   *nftables.Set
	internet   *nftables.Set
}

func newFirewall(table, linkPrefix string, subnet netip.Prefix) *firewall {
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
	}
}

// install creates the table or, if it exists, replaces its rules while
// keeping the set elements of running capsules, in one transaction.
func (f *firewall) install() error {
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
			join(inPrefix(16, linkLocal), verdict(expr.VerdictDrop)),
			join(f.lookup(f.internet, false), verdict(expr.VerdictAccept)),
			verdict(expr.VerdictDrop),
		},
		in: {
			join(f.ifname(expr.MetaKeyIIFNAME, expr.CmpOpEq), jump(capIn.Name)),
		},
		capIn: {
			join(notIPv4(), verdict(expr.VerdictDrop)),
			join(f.lookup(f.capsules, true), verdict(expr.VerdictDrop)),
			join(ctReply(), verdict(expr.VerdictAccept)),
			verdict(expr.VerdictDrop),
		},
		post: {
			join(inPrefix(12, f.subnet), f.ifname(expr.MetaKeyOIFNAME, expr.CmpOpNeq), []expr.Any{&expr.Masq{}}),
		},
	}
	for _, ch := range []*nftables.Chain{fwd, capFwd, in, capIn, post} {
		for _, exprs := range rules[ch] {
			c.AddRule(&nftables.Rule{Table: f.table, Chain: ch, Exprs: exprs})
		}
	}
	return c.Flush()
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
