// Package nft holds the nftables objects nftpolicy programs (a small,
// closed vocabulary of sets, maps, chains and rules), renders them as nft
// text, and applies transactions of them to a kernel over netlink.
package nft

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/inet"
)

// TableName is the one inet table nftpolicy owns. Nothing else writes to it
// and nftpolicy writes to nothing else.
const TableName = "nftpolicy"

// Family is an address family, for matches that load an address.
type Family uint8

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// SetType is the key (and for maps, data) type of a set. The list is closed:
// every set nftpolicy makes is one of these.
type SetType int

const (
	// SetIPv4 and SetIPv6 hold single addresses (hash): pod IPs.
	SetIPv4 SetType = iota
	SetIPv6
	// SetIPv4Interval and SetIPv6Interval hold disjoint address ranges: ipBlocks.
	SetIPv4Interval
	SetIPv6Interval
	// SetProtoPortInterval holds protocol . port-range: a rule's numeric ports.
	SetProtoPortInterval
	// SetIPv4ProtoPort and SetIPv6ProtoPort hold address . protocol . port
	// (hash): named ports resolved on the pods that declare them.
	SetIPv4ProtoPort
	SetIPv6ProtoPort
	// MapIPv4Verdict and MapIPv6Verdict map an address to a goto verdict:
	// the per-pod dispatch.
	MapIPv4Verdict
	MapIPv6Verdict
	// MapIPv4IntervalVerdict and MapIPv6IntervalVerdict map disjoint
	// address ranges to a goto verdict (rbtree): ipBlocks to what they
	// lead to.
	MapIPv4IntervalVerdict
	MapIPv6IntervalVerdict
	// MapProtoPortVerdict maps protocol . port-range to a goto verdict
	// (pipapo): a port lookup whose first match is resolved in the
	// elements.
	MapProtoPortVerdict

	lastSetType = MapProtoPortVerdict
)

// IsMap reports whether the set is a verdict map.
func (t SetType) IsMap() bool {
	switch t {
	case MapIPv4Verdict, MapIPv6Verdict, MapIPv4IntervalVerdict, MapIPv6IntervalVerdict, MapProtoPortVerdict:
		return true
	}
	return false
}

// IsInterval reports whether elements are ranges.
func (t SetType) IsInterval() bool {
	switch t {
	case SetIPv4Interval, SetIPv6Interval, SetProtoPortInterval,
		MapIPv4IntervalVerdict, MapIPv6IntervalVerdict, MapProtoPortVerdict:
		return true
	}
	return false
}

// IsProtoPort reports whether the key is protocol . port-range.
func (t SetType) IsProtoPort() bool { return t == SetProtoPortInterval || t == MapProtoPortVerdict }

// Family is the address family of the set's key; zero for the
// protocol . port types.
func (t SetType) Family() Family {
	switch t {
	case SetIPv4, SetIPv4Interval, SetIPv4ProtoPort, MapIPv4Verdict, MapIPv4IntervalVerdict:
		return IPv4
	case SetIPv6, SetIPv6Interval, SetIPv6ProtoPort, MapIPv6Verdict, MapIPv6IntervalVerdict:
		return IPv6
	}
	return 0
}

// Decl is the nft declaration body of a set of this type.
func (t SetType) Decl() string {
	switch t {
	case SetIPv4:
		return "type ipv4_addr"
	case SetIPv6:
		return "type ipv6_addr"
	case SetIPv4Interval:
		return "type ipv4_addr; flags interval"
	case SetIPv6Interval:
		return "type ipv6_addr; flags interval"
	case SetProtoPortInterval:
		return "type inet_proto . inet_service; flags interval"
	case SetIPv4ProtoPort:
		return "type ipv4_addr . inet_proto . inet_service"
	case SetIPv6ProtoPort:
		return "type ipv6_addr . inet_proto . inet_service"
	case MapIPv4Verdict:
		return "type ipv4_addr : verdict"
	case MapIPv6Verdict:
		return "type ipv6_addr : verdict"
	case MapIPv4IntervalVerdict:
		return "type ipv4_addr : verdict; flags interval"
	case MapIPv6IntervalVerdict:
		return "type ipv6_addr : verdict; flags interval"
	case MapProtoPortVerdict:
		return "type inet_proto . inet_service : verdict; flags interval"
	}
	return fmt.Sprintf("invalid set type %d", int(t))
}

// Elem is one element of a set or map. Which fields are used depends on the
// set's type; the others stay zero. Elem is comparable, so a set's elements
// are a Go map keyed by Elem and diffs are plain set differences. For verdict
// maps Chain is part of the value: changing an address's target is a delete of
// the old element and an add of the new one, which is exactly what the kernel
// needs (re-adding a key with a new verdict fails with EEXIST).
type Elem struct {
	Addr    netip.Addr // the address, or the first of a range
	AddrEnd netip.Addr // interval sets: the last address of the range (inclusive)
	Proto   uint8      // IP protocol number
	Port    uint16     // the port, or the first of a range
	PortEnd uint16     // SetProtoPortInterval: the last port (inclusive)
	Chain   string     // verdict maps: the chain to goto
}

// Text renders the element in nft syntax for a set of type t.
func (e Elem) Text(t SetType) string {
	switch t {
	case SetIPv4, SetIPv6:
		return e.Addr.String()
	case SetIPv4Interval, SetIPv6Interval:
		return e.rangeText()
	case SetProtoPortInterval:
		return e.portsText()
	case SetIPv4ProtoPort, SetIPv6ProtoPort:
		return fmt.Sprintf("%s . %s . %d", e.Addr, inet.ProtoName(e.Proto), e.Port)
	case MapIPv4Verdict, MapIPv6Verdict:
		return e.Addr.String() + " : goto " + e.Chain
	case MapIPv4IntervalVerdict, MapIPv6IntervalVerdict:
		return e.rangeText() + " : goto " + e.Chain
	case MapProtoPortVerdict:
		return e.portsText() + " : goto " + e.Chain
	}
	return "?"
}

// KeyText is the element's key alone: what a delete names.
func (e Elem) KeyText(t SetType) string {
	switch t {
	case MapIPv4Verdict, MapIPv6Verdict:
		return e.Addr.String()
	case MapIPv4IntervalVerdict, MapIPv6IntervalVerdict:
		return e.rangeText()
	case MapProtoPortVerdict:
		return e.portsText()
	}
	return e.Text(t)
}

func (e Elem) rangeText() string {
	if e.Addr == e.AddrEnd {
		return e.Addr.String()
	}
	return e.Addr.String() + "-" + e.AddrEnd.String()
}

func (e Elem) portsText() string {
	ports := fmt.Sprint(e.Port)
	if e.PortEnd != e.Port {
		ports = fmt.Sprintf("%d-%d", e.Port, e.PortEnd)
	}
	return inet.ProtoName(e.Proto) + " . " + ports
}

// IP protocol numbers (defined once, in inet).
const (
	ProtoTCP  = inet.TCP
	ProtoUDP  = inet.UDP
	ProtoSCTP = inet.SCTP
)

// Set is a named set or verdict map.
type Set struct {
	Name    string
	Type    SetType
	Comment string
	// The elements: a plain verdict map's (an address to a chain) by their
	// address, as the kernel keys them (one verdict per key), the others
	// whole. Keyed by address, the maps of peer identities and local pods
	// take less memory than whole 72-byte elements (the engine and its
	// shadow at L: 30.0 → 26.4 MB of heap) and the tracer finds an
	// address's verdict without a scan; the event that moves thousands of
	// addresses is not much faster for it (`BenchmarkEngineNewSelector`,
	// paired: add 6.71 → 6.53 ms p50), its time being memory latency.
	// IPv4 addresses are keyed as numbers (inet.AddrMap, whose benchmarks
	// compare it with netip.Addr keys): the costliest event's shadow update
	// 0.62 → 0.31 ms p50, its diff 1.10 → 0.95 ms, in six alternations of
	// both builds.
	elems    map[Elem]struct{}
	verdicts inet.AddrMap[string]
	// view, when set, holds the elements instead: the set is a view of
	// another structure (the compile engine's peer addresses answer for its
	// ids maps) and cannot be changed through these methods.
	view AddrVerdicts
}

// AddrVerdicts is what a view of a plain verdict map (an address to a
// chain) answers: the chain of an address, all of them, their number.
type AddrVerdicts interface {
	Verdict(a netip.Addr) (chain string, ok bool)
	All() iter.Seq2[netip.Addr, string]
	Len() int
}

// NewView makes a plain verdict map whose elements v holds: they change as
// v does, and Add, Delete and Clear panic. A clone of it is a set of its own.
func NewView(name string, t SetType, comment string, v AddrVerdicts) *Set {
	if t != MapIPv4Verdict && t != MapIPv6Verdict {
		panic(fmt.Sprintf("nft: view %s of type %v: only plain verdict maps can be views", name, t))
	}
	return &Set{Name: name, Type: t, Comment: comment, view: v}
}

// IsView reports whether the set is a view of another structure (NewView).
func (s *Set) IsView() bool { return s.view != nil }

// verdict is the chain of an address in a plain verdict map.
func (s *Set) verdict(a netip.Addr) (string, bool) {
	if s.view != nil {
		return s.view.Verdict(a)
	}
	return s.verdicts.Get(a)
}

func (s *Set) mustOwn() {
	if s.view != nil {
		panic("nft: set " + s.Name + " is a view: change what it views")
	}
}

// NewSet makes an empty set.
func NewSet(name string, t SetType, comment string) *Set {
	s := &Set{Name: name, Type: t, Comment: comment}
	s.Clear()
	return s
}

// byAddr reports whether the set keeps its elements by address.
func (s *Set) byAddr() bool { return s.Type == MapIPv4Verdict || s.Type == MapIPv6Verdict }

// Add adds elements. In a plain verdict map (whose elements are an address
// and a chain) an element replaces the one of its address: a key has one
// verdict, as in the kernel.
func (s *Set) Add(elems ...Elem) {
	s.mustOwn()
	for _, e := range elems {
		if s.byAddr() {
			s.verdicts.Set(e.Addr, e.Chain)
		} else {
			s.elems[e] = struct{}{}
		}
	}
}

// Delete removes e if the set holds it (in a verdict map, its address to
// its chain: the address's element to another chain stays).
func (s *Set) Delete(e Elem) {
	s.mustOwn()
	if !s.byAddr() {
		delete(s.elems, e)
	} else if c, ok := s.verdicts.Get(e.Addr); ok && c == e.Chain {
		s.verdicts.Delete(e.Addr)
	}
}

// Has reports whether the set holds e.
func (s *Set) Has(e Elem) bool {
	if s.byAddr() {
		c, ok := s.verdict(e.Addr)
		return ok && e == Elem{Addr: e.Addr, Chain: c}
	}
	_, ok := s.elems[e]
	return ok
}

// Len is the number of elements.
func (s *Set) Len() int {
	if s.view != nil {
		return s.view.Len()
	}
	return len(s.elems) + s.verdicts.Len()
}

// All yields the elements, in no order.
func (s *Set) All() iter.Seq[Elem] {
	return func(yield func(Elem) bool) {
		if s.view != nil {
			for a, c := range s.view.All() {
				if !yield(Elem{Addr: a, Chain: c}) {
					return
				}
			}
			return
		}
		for e := range s.elems {
			if !yield(e) {
				return
			}
		}
		for a, c := range s.verdicts.All() {
			if !yield(Elem{Addr: a, Chain: c}) {
				return
			}
		}
	}
}

// Clear removes every element.
func (s *Set) Clear() {
	s.mustOwn()
	s.elems, s.verdicts = nil, inet.AddrMap[string]{}
	if !s.byAddr() {
		s.elems = map[Elem]struct{}{}
	}
}

// Sorted returns the elements in a stable order (SortElems).
func (s *Set) Sorted() []Elem { return SortElems(slices.AppendSeq(make([]Elem, 0, s.Len()), s.All())) }

// Equal reports whether two sets have the same name, type, comment and
// elements (go-cmp compares sets by it).
func (s *Set) Equal(o *Set) bool {
	if s == nil || o == nil {
		return s == o
	}
	if s.Name != o.Name || s.Type != o.Type || s.Comment != o.Comment {
		return false
	}
	if s.view != nil || o.view != nil {
		if s.Len() != o.Len() {
			return false
		}
		for e := range s.All() {
			if !o.Has(e) {
				return false
			}
		}
		return true
	}
	return maps.Equal(s.elems, o.elems) && inet.EqualAddrMaps(&s.verdicts, &o.verdicts)
}

// clone is a copy of the set and its elements (of a view: a set of its
// own with the elements it shows now).
func (s *Set) clone() *Set {
	if s.view != nil {
		c := NewSet(s.Name, s.Type, s.Comment)
		for a, ch := range s.view.All() {
			c.verdicts.Set(a, ch)
		}
		return c
	}
	return &Set{Name: s.Name, Type: s.Type, Comment: s.Comment, elems: maps.Clone(s.elems), verdicts: s.verdicts.Clone()}
}

// SortElems sorts elements by every field: address, range end, protocol,
// port, port range end, chain (compareElems). A long list is put in its
// addresses' order (AddrOrder: IPv4 addresses sorted as numbers), each run
// of one address then sorted by compareElems: for the 4,800 ids-map
// elements of the costliest event at L, 0.55 ms against 1.05 ms moving the
// 72-byte elements and comparing them field by field (BenchmarkSortElems,
// a copy of the list included).
func SortElems(elems []Elem) []Elem {
	if len(elems) < sortByKeyFrom {
		slices.SortFunc(elems, compareElems)
		return elems
	}
	sorted := make([]Elem, 0, len(elems))
	for _, i := range AddrOrder(len(elems), func(i int) netip.Addr { return elems[i].Addr }) {
		sorted = append(sorted, elems[i])
	}
	for lo := 0; lo < len(sorted); {
		hi := lo + 1
		for hi < len(sorted) && sorted[hi].Addr == sorted[lo].Addr {
			hi++
		}
		if hi-lo > 1 {
			slices.SortFunc(sorted[lo:hi], compareElems)
		}
		lo = hi
	}
	copy(elems, sorted)
	return elems
}

// AddrOrder returns the indexes 0 to n-1 in the order of their addresses
// (addr), those of one address in index order: the IPv4 addresses as
// numbers with a radix sort (sortHigh32), then the others, as netip
// orders them.
func AddrOrder(n int, addr func(i int) netip.Addr) []int {
	keys := make([]uint64, 0, n)
	var others []int
	for i := range n {
		if a := addr(i); a.Is4() {
			keys = append(keys, uint64(inet.V4Number(a))<<32|uint64(i))
		} else {
			others = append(others, i)
		}
	}
	sortHigh32(keys)
	order := make([]int, 0, n)
	for _, k := range keys {
		order = append(order, int(uint32(k)))
	}
	slices.SortStableFunc(others, func(a, b int) int { return addr(a).Compare(addr(b)) })
	return append(order, others...)
}

// sortHigh32 sorts numbers by their high 32 bits, keeping the order of
// those that share them: a radix sort, a byte at a time. AddrOrder's keys
// (an address, then an index) come out as a comparison sort would order
// them; 4,800 of them took 120–150 µs against slices.Sort's 330–430 µs.
func sortHigh32(keys []uint64) {
	tmp := make([]uint64, len(keys))
	for shift := 32; shift < 64; shift += 8 {
		var start [256]int
		for _, k := range keys {
			start[byte(k>>shift)]++
		}
		n := 0
		for b, c := range start {
			start[b], n = n, n+c
		}
		for _, k := range keys {
			b := byte(k >> shift)
			tmp[start[b]] = k
			start[b]++
		}
		keys, tmp = tmp, keys // four passes: the sorted keys end in the caller's slice
	}
}

// SortedOnce reports whether elements are in SortElems' order with no
// repeats.
func SortedOnce(elems []Elem) bool {
	for i := 1; i < len(elems); i++ {
		if compareElems(elems[i-1], elems[i]) >= 0 {
			return false
		}
	}
	return true
}

// sortByKeyFrom is the length from which SortElems orders addresses first.
const sortByKeyFrom = 256

// compareElems orders elements by every field, so equal ones end up side
// by side.
func compareElems(a, b Elem) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := a.AddrEnd.Compare(b.AddrEnd); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	if c := cmp.Compare(a.PortEnd, b.PortEnd); c != 0 {
		return c
	}
	return strings.Compare(a.Chain, b.Chain)
}

// Hook makes a chain a base chain.
type Hook struct {
	Hook     string // "prerouting", "forward", "input" or "output"
	Priority int    // relative to the filter priority (0)
}

// Chain is a base or regular chain with its rules.
type Chain struct {
	Name  string
	Hook  *Hook // nil for a regular chain
	Rules []*Rule
}

// Rule is a list of matches, an optional counter, an optional log and a
// verdict.
type Rule struct {
	Matches []Match
	Counter bool
	// Log copies the packet's headers to an NFLOG group (a copy: the packet
	// goes on at once). A rule with a Log has no verdict: the kernel's
	// limit stops evaluating the rule when over its rate, so the verdict
	// lives in a rule of its own after it, or it would be skipped too.
	Log     *Log
	Verdict Verdict
	// Origin says which policy rule this rule implements, for verdict logs
	// and metrics. It is not sent to the kernel (the comment and the log
	// prefix are).
	Origin *Origin
	// Comment names what the rule implements ("x/allow-web ingress rule 0").
	Comment string
	// ReadID is set on rules read back from the kernel, whose matches are
	// not decoded: it is the comment the kernel holds, i.e. their ID.
	ReadID string
}

// Log is `limit rate R/second burst B packets log prefix "P" group G`.
type Log struct {
	Group  uint16
	Prefix string // at most MaxLogPrefixLen bytes
	Rate   uint32 // packets per second; 0: no limit
	Burst  uint32
}

// MaxLogPrefixLen is the longest log prefix the kernel takes
// (NF_LOG_PREFIXLEN is 128 with the terminating NUL); a longer one fails
// the whole batch with ERANGE.
const MaxLogPrefixLen = 127

func (l *Log) text() string {
	s := fmt.Sprintf("log prefix %q group %d", l.Prefix, l.Group)
	if l.Rate > 0 {
		s = fmt.Sprintf("limit rate %d/second burst %d packets %s", l.Rate, l.Burst, s)
	}
	return s
}

// Origin is the policy rule an nft rule implements, as verdict logs and
// the per-policy metrics name it.
type Origin struct {
	Direction string // "ingress" or "egress"
	Tier      string // "admin", "networkpolicy", "baseline" or "unknown-pod"
	Policy    string // Kind/namespace/name or namespace/name; a class's policies joined by ","
	Rule      string // the rule's index, or "default-deny" when no rule matched
	RuleName  string // tier policies' rule name, if any
	Verdict   string // "accept", "drop", "pass" or "would-drop"
}

// Match is one condition of a rule. The set of matches is closed: the types
// below are all there is, so the netlink encoder and the text renderer can
// handle each one exhaustively.
type Match interface{ matchText() string }

// MatchCtState matches conntrack states ("established", "related", "invalid").
type MatchCtState struct{ States []string }

// MatchAddrInSet matches the source (Src) or destination address against a
// set; with Not, an address the set does not hold (`!= @set`).
type MatchAddrInSet struct {
	Family Family
	Src    bool
	Set    string
	Not    bool
}

// MatchProtoPortInSet matches meta l4proto . th dport against a set.
type MatchProtoPortInSet struct{ Set string }

// MatchDaddrProtoPortInSet matches daddr . meta l4proto . th dport against a set.
type MatchDaddrProtoPortInSet struct {
	Family Family
	Set    string
}

// MatchICMPv6ND matches ICMPv6 neighbour and router discovery messages,
// which must always pass or IPv6 stops working on the link.
type MatchICMPv6ND struct{}

// MatchFibSaddrLocal matches packets sent from one of the node's own
// addresses: on the output path, the node's own traffic.
type MatchFibSaddrLocal struct{}

// MatchFibDaddrLocal matches packets addressed to one of the node's own
// addresses.
type MatchFibDaddrLocal struct{}

// MatchDNSAnswer matches UDP packets from port 53 in the reply direction of
// their connection: the answers to DNS queries a client sent.
type MatchDNSAnswer struct{}

func (m MatchCtState) matchText() string { return "ct state " + strings.Join(m.States, ",") }

func (m MatchAddrInSet) matchText() string {
	dir := "daddr"
	if m.Src {
		dir = "saddr"
	}
	op := ""
	if m.Not {
		op = "!= "
	}
	return fmt.Sprintf("%s %s %s@%s", addrProto(m.Family), dir, op, m.Set)
}

func (m MatchProtoPortInSet) matchText() string { return "meta l4proto . th dport @" + m.Set }

func (m MatchDaddrProtoPortInSet) matchText() string {
	return fmt.Sprintf("%s daddr . meta l4proto . th dport @%s", addrProto(m.Family), m.Set)
}

// ndType is an ICMPv6 type of neighbour or router discovery (RFC 4861), by
// its nft name and its number.
type ndType struct {
	name string
	num  byte
}

// ndTypes returns the types MatchICMPv6ND accepts, in one table so that the
// text and the netlink forms cannot disagree. A function, not a variable:
// nothing can change the list under the rules that use it.
func ndTypes() []ndType {
	return []ndType{
		{"nd-router-solicit", 133},
		{"nd-router-advert", 134},
		{"nd-neighbor-solicit", 135},
		{"nd-neighbor-advert", 136},
		{"nd-redirect", 137},
	}
}

func (MatchICMPv6ND) matchText() string {
	var names []string
	for _, t := range ndTypes() {
		names = append(names, t.name)
	}
	return "icmpv6 type { " + strings.Join(names, ", ") + " }"
}

func (MatchFibSaddrLocal) matchText() string { return "fib saddr type local" }

func (MatchFibDaddrLocal) matchText() string { return "fib daddr type local" }

func (MatchDNSAnswer) matchText() string { return "udp sport 53 ct direction reply" }

func addrProto(f Family) string {
	if f == IPv6 {
		return "ip6"
	}
	return "ip"
}

// VerdictKind is what a rule does when it matches.
type VerdictKind int

const (
	VerdictNone VerdictKind = iota // no verdict: only the counter counts
	Accept
	Drop
	Return
	Jump
	Goto
	// Vmap looks the source or destination address up in a verdict map.
	Vmap
)

// Verdict is a rule's verdict.
type Verdict struct {
	Kind   VerdictKind
	Chain  string // Jump, Goto
	Map    string // Vmap
	Family Family // Vmap on an address
	Src    bool   // Vmap: key on the source address
	// ProtoPort keys a Vmap on meta l4proto . th dport instead of an
	// address (a MapProtoPortVerdict).
	ProtoPort bool
}

func (v Verdict) text() string {
	switch v.Kind {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	case Return:
		return "return"
	case Jump:
		return "jump " + v.Chain
	case Goto:
		return "goto " + v.Chain
	case Vmap:
		if v.ProtoPort {
			return "meta l4proto . th dport vmap @" + v.Map
		}
		dir := "daddr"
		if v.Src {
			dir = "saddr"
		}
		return fmt.Sprintf("%s %s vmap @%s", addrProto(v.Family), dir, v.Map)
	}
	return ""
}

// Body is the rule in nft syntax without its comment.
func (r *Rule) Body() string {
	var parts []string
	for _, m := range r.Matches {
		parts = append(parts, m.matchText())
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	if r.Log != nil {
		parts = append(parts, r.Log.text())
	}
	if v := r.Verdict.text(); v != "" {
		parts = append(parts, v)
	}
	return strings.Join(parts, " ")
}

// ID is the comment stored in the kernel with the rule: the readable comment
// and a short hash of the rule's body. Reading the comments back is enough
// to tell whether a chain in the kernel still holds what we programmed, so
// the differ never has to decode expressions.
func (r *Rule) ID() string {
	if r.ReadID != "" {
		return r.ReadID
	}
	h := fnv.New32a()
	h.Write([]byte(r.Body()))
	id := fmt.Sprintf("%08x", h.Sum32())
	if r.Comment == "" {
		return id
	}
	return truncate(r.Comment, MaxCommentLen-len(id)-3) + " [" + id + "]"
}

// Text is the rule as nft text, comment included.
func (r *Rule) Text() string { return r.Body() + fmt.Sprintf(" comment %q", r.ID()) }

// MaxCommentLen is the longest comment the nft CLI accepts (the kernel
// takes more), so the text form always loads.
const MaxCommentLen = 128

// MaxNameLen is the longest set or chain name nftpolicy makes. The kernel
// allows 255 since 5.x; shorter names keep `nft list` readable.
const MaxNameLen = 64

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// Name builds a deterministic object name: a prefix, a short hash of the
// full identity (so different identities never collide after truncation),
// and as much of the readable identity as fits.
func Name(prefix, identity string) string {
	// Appended, not formatted, and the identity read only as far as the
	// name goes: the engine names chains on every event that builds one,
	// and fmt and sanitizing long identities were 8% of its time (S events).
	h := uint32(2166136261) // FNV-1a, as hash/fnv's New32a
	for i := 0; i < len(identity); i++ {
		h = (h ^ uint32(identity[i])) * 16777619
	}
	b := make([]byte, 0, MaxNameLen+4)
	b = append(append(b, prefix...), '-')
	const hex = "0123456789abcdef"
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, hex[h>>shift&0xf])
	}
	b = appendSanitized(append(b, '-'), identity, MaxNameLen)
	return strings.TrimRight(truncate(string(b), MaxNameLen), "-_./")
}

// appendSanitized appends s with only the characters nft accepts in an
// unquoted identifier, every run of others folded into one underscore, or
// as much of that as makes b at least n bytes long.
func appendSanitized(b []byte, s string, n int) []byte {
	folded := false
	for _, r := range s {
		if len(b) >= n {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '/':
			b = append(b, byte(r))
			folded = false
		case !folded:
			b = append(b, '_')
			folded = true
		}
	}
	return b
}

// HashName is a deterministic name with no readable part: the prefix and
// a 64-bit hash of the identity. It is for objects that every element of a
// large map names (the identity chains, each ids-map element's target):
// with 64-character names the costliest event's batch at L was 534 KB,
// not 360 KB, and its Apply 0.4–3 ms slower in three of four paired runs
// (perf/results/names). Their rules' comments say what they are.
func HashName(prefix, identity string) string {
	h := fnv.New64a()
	h.Write([]byte(identity))
	return fmt.Sprintf("%s-%016x", prefix, h.Sum64())
}

// Ruleset is the whole content of the nftpolicy table: what the compiler
// wants, or what the kernel holds (as the shadow or as read back).
type Ruleset struct {
	Sets   map[string]*Set
	Chains map[string]*Chain
}

// NewRuleset makes an empty ruleset.
func NewRuleset() *Ruleset {
	return &Ruleset{Sets: map[string]*Set{}, Chains: map[string]*Chain{}}
}

// AddSet adds s, or returns the set of that name already there.
func (rs *Ruleset) AddSet(s *Set) *Set {
	if old, ok := rs.Sets[s.Name]; ok {
		return old
	}
	rs.Sets[s.Name] = s
	return s
}

// AddChain adds c, replacing any chain of that name.
func (rs *Ruleset) AddChain(c *Chain) *Chain {
	rs.Chains[c.Name] = c
	return c
}

// SortedSets returns the sets by name.
func (rs *Ruleset) SortedSets() []*Set {
	out := make([]*Set, 0, len(rs.Sets))
	for _, s := range rs.Sets {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SortedChains returns base chains first (by hook, priority), then regular
// chains by name.
func (rs *Ruleset) SortedChains() []*Chain {
	out := make([]*Chain, 0, len(rs.Chains))
	for _, c := range rs.Chains {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Hook != nil) != (b.Hook != nil) {
			return a.Hook != nil
		}
		if a.Hook != nil && a.Hook.Hook != b.Hook.Hook {
			return a.Hook.Hook < b.Hook.Hook
		}
		if a.Hook != nil && a.Hook.Priority != b.Hook.Priority {
			return a.Hook.Priority < b.Hook.Priority
		}
		return a.Name < b.Name
	})
	return out
}

// Clone returns a deep copy (rules are immutable once built and are shared).
func (rs *Ruleset) Clone() *Ruleset {
	out := NewRuleset()
	for n, s := range rs.Sets {
		out.Sets[n] = s.clone()
	}
	for n, c := range rs.Chains {
		out.Chains[n] = &Chain{Name: c.Name, Hook: c.Hook, Rules: append([]*Rule(nil), c.Rules...)}
	}
	return out
}
