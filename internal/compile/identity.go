package compile

import (
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Peer identities: how a class (NetworkPolicy, admin or baseline) judges a
// new connection in a fixed number of lookups, whatever the number of its
// policies and rules (docs/ruleset.md, "From a pod to its policies").
//
// The identity of a peer address in one space (a direction and a tier:
// tiers.go) is the set of matchers that hold it among those the space's
// classes use as peers: the
// dynamic address sets (pod and node peers) it is a member of and the
// ipBlock sets whose ranges contain it. Addresses with the same identity
// share it. The engine keeps identities from the sets' own membership
// counts: when a set gains or loses an address, that address's identity
// is computed again (settle); no matcher is evaluated per pod.
//
//	<dir>-class-…:  jump <dir>-peer; counter drop                 (the class's default)
//	<dir>-peer:     ip saddr vmap @<dir>-ids-v4                    address -> goto <dir>-id-…
//	                ip saddr vmap @<dir>-cidr-ids-v4               ipBlock ranges -> goto <dir>-id-…
//	                goto <dir>-id-none                             the empty identity
//	<dir>-id-…:     ip daddr vmap @<dir>-idmap-…                   local pod -> goto its group
//	                goto <dir>-id-<its ipBlocks alone> or <dir>-id-none   its base
//	<dir>-grp-…:    meta l4proto . th dport vmap @…                first rule per port -> goto v-…
//	v-<dir>-…:      counter accept comment "ns/policy dir rule N"
//
// A group chain is a class's rules that an identity matches (identities
// that match the same rules share it, whatever their classes), in the
// evaluator's order (policies by key, rules by index); runs of numeric-port rules become one port map whose elements
// carry the first rule that covers each range, a rule with named ports stays
// a set lookup of its own (its port depends on the pod that declares it).
// What no group rule takes falls off the group, back into the class chain
// after its jump, to the class's default drop. A tier's spaces are the
// same with its prefix (`ingress-admin-peer`, `ingress-admin-ids-v4`, …),
// its groups in the tier's order and its verdict chains with the rules'
// actions.

// space is one identity space: the classes of one direction and one tier
// (NetworkPolicy, admin or baseline) and the peers they judge. Each has its
// own identities: a pod has a class in each tier, and an identity's map
// sends a local pod to one group.
type space struct {
	dir  model.Direction
	tier spaceTier
}

// spaceTier is the tier of a space's classes.
type spaceTier uint8

const (
	npTier spaceTier = iota
	adminTier
	baselineTier
)

// spaces lists every space, in index order.
var spaces = func() []space {
	var out []space
	for _, t := range []spaceTier{npTier, adminTier, baselineTier} {
		for _, dir := range directions {
			out = append(out, space{dir, t})
		}
	}
	return out
}()

const nSpaces = 6

func (s space) index() int { return int(s.tier)*2 + dirIndex(s.dir) }

// prefix begins the names of the space's objects: the NetworkPolicy
// spaces' are the direction alone, as before the tiers had identities.
func (s space) prefix() string {
	switch s.tier {
	case adminTier:
		return s.dir.String() + "-admin"
	case baselineTier:
		return s.dir.String() + "-baseline"
	}
	return s.dir.String()
}

// spaceOfClass is the space whose identities a class chain's peers make.
func spaceOfClass(d chainDef) (space, bool) {
	switch d.kind {
	case chainNPClass:
		return space{d.dir, npTier}, true
	case chainAdminClass:
		return space{d.dir, adminTier}, true
	case chainBaselineClass:
		return space{d.dir, baselineTier}, true
	}
	return space{}, false
}

// Names of the identity layout's fixed objects.
func peerChain(s space) string { return s.prefix() + "-peer" }

// IDsMap is the hash verdict map from a peer address to its identity chain
// in the NetworkPolicy classes of dir.
func IDsMap(dir model.Direction, fam nft.Family) string {
	return idsMaps[dirIndex(dir)][famIndex(fam)]
}

// idsMaps are the ids maps' names, by space and family: made once, they
// are named for every address an event moves.
var idsMaps = func() (out [nSpaces][2]string) {
	for _, s := range spaces {
		for _, f := range families {
			out[s.index()][famIndex(f)] = fmt.Sprintf("%s-ids-v%d", s.prefix(), f)
		}
	}
	return out
}()

// cidrIDsMap is the interval verdict map from the disjoint ranges of the
// node's ipBlocks to the identity of the addresses in exactly those blocks.
func cidrIDsMap(s space, fam nft.Family) string {
	return fmt.Sprintf("%s-cidr-ids-v%d", s.prefix(), fam)
}

const noneID = "none"

// identity is one live peer identity of one space.
type identity struct {
	desc  string // its sets, sorted and joined: the name's source
	sp    space
	fam   nft.Family // 0: the empty identity, of both families
	names []string   // its sets, sorted
	refs  int        // addresses in the ids map, ranges in the cidr map, identities it is the base of; the empty one is pinned
	// base is where its chain goes when its map has no element for the
	// local pod: the identity of its ipBlock sets alone (or the empty one).
	// A pod's element is in the first identity along that line whose
	// matched rules differ from its base's, so a class whose rules only an
	// ipBlock or "any" peer matches has one element per ipBlock identity,
	// not one per pod identity (at L ~50 of those).
	base *identity
	// elems: a local pod's elements in the identity's map.
	elems map[string][]nft.Elem
	// Names, made once: hashing and cleaning the long description was a
	// third of an event's time.
	chainName string
	maps      [2]string // by family
}

func newIdentity(sp space, desc string, fam nft.Family, names []string) *identity {
	id := &identity{desc: desc, sp: sp, fam: fam, names: slices.Clone(names), elems: map[string][]nft.Elem{}}
	if desc == noneID {
		id.chainName = sp.prefix() + "-id-none"
	} else {
		id.chainName = nft.HashName(sp.prefix()+"-id", desc)
	}
	for _, f := range families {
		if desc == noneID {
			id.maps[famIndex(f)] = fmt.Sprintf("%s-id-none-v%d", sp.prefix(), f)
		} else {
			id.maps[famIndex(f)] = nft.HashName(fmt.Sprintf("%s-idmap-v%d", sp.prefix(), f), desc)
		}
	}
	return id
}

func famIndex(f nft.Family) int {
	if f == nft.IPv6 {
		return 1
	}
	return 0
}

func (id *identity) idMap(fam nft.Family) string { return id.maps[famIndex(fam)] }

func (id *identity) families() []nft.Family {
	if id.fam == 0 {
		return families
	}
	return []nft.Family{id.fam}
}

// identityBase adds the fixed objects: the peer chains, the ids and cidr
// maps, and the empty identity.
func (e *Engine) identityBase() {
	for _, sp := range spaces {
		src := sp.dir == model.Ingress
		what := sp.prefix()
		ch := &nft.Chain{Name: peerChain(sp)}
		for _, fam := range families {
			m := idsMaps[sp.index()][famIndex(fam)]
			e.rs.AddSet(nft.NewView(m, mapType(fam), fmt.Sprintf("peer addresses -> their identity (%s)", what), idsView{e, sp.index(), fam}))
			ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: m, Family: fam, Src: src}, Comment: "peer identity"})
		}
		for _, fam := range families {
			t := nft.MapIPv4IntervalVerdict
			if fam == nft.IPv6 {
				t = nft.MapIPv6IntervalVerdict
			}
			e.rs.AddSet(nft.NewSet(cidrIDsMap(sp, fam), t, fmt.Sprintf("ipBlock ranges -> their identity (%s)", what)))
			ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: cidrIDsMap(sp, fam), Family: fam, Src: src}, Comment: "ipBlock identity"})
		}
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Goto, Chain: sp.prefix() + "-id-none"}, Comment: "no identity"})
		e.rs.AddChain(ch)
		e.acquireID(sp, noneID, 0, nil)
	}
}

// peerAddr is what the engine knows of one peer address: the dynamic
// address sets that hold it and its identity in each direction. One
// record, found once: an event that makes or uses a set of thousands of
// pods visits each of them, and lookups in maps of 50,000 addresses were
// most of that time.
type peerAddr struct {
	addr  netip.Addr
	sets  []*liveSet         // by name
	id    [nSpaces]*identity // by space; nil: not in that ids map
	dirty bool               // in Engine.dirty
}

// trackAddr records that an address joined a dynamic address set, and
// returns its record.
func (e *Engine) trackAddr(ls *liveSet, a netip.Addr) *peerAddr {
	pa := e.addrs[a]
	if pa == nil {
		pa = &peerAddr{addr: a}
		e.addrs[a] = pa
	}
	if i, found := pa.setIndex(ls); !found {
		pa.sets = slices.Insert(pa.sets, i, ls)
	}
	e.markDirty(pa)
	return pa
}

// untrackAddr records that an address left a dynamic address set.
func (e *Engine) untrackAddr(ls *liveSet, pa *peerAddr) {
	if i, found := pa.setIndex(ls); found {
		pa.sets = slices.Delete(pa.sets, i, i+1)
	}
	e.markDirty(pa)
}

// setIndex finds ls in the address's sets, sorted by name.
func (pa *peerAddr) setIndex(ls *liveSet) (int, bool) {
	return slices.BinarySearchFunc(pa.sets, ls.name, func(x *liveSet, name string) int { return strings.Compare(x.name, name) })
}

// markDirty queues an address whose identity may have changed.
func (e *Engine) markDirty(pa *peerAddr) {
	if !pa.dirty {
		pa.dirty = true
		e.dirty = append(e.dirty, pa)
	}
}

// isAddrSet: a dynamic set of pod or node addresses (not named ports).
func isAddrSet(ls *liveSet) bool { return ls != nil && ls.def != nil && ls.def.named == nil }

// identityOf names the sets that make an address's identity in a space
// now, sorted (valid until the next call): none when no dynamic set that
// the space's classes use holds it (the cidr map or the empty identity
// answers for it).
func (e *Engine) identityOf(pa *peerAddr, sp space) []string {
	d := sp.index()
	names := e.idNames[:0]
	for _, ls := range pa.sets {
		if ls.uses[d] > 0 {
			names = append(names, ls.name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	n := len(names)
	for _, c := range e.usedCidrsOf(d) {
		for _, s := range c.spans {
			if !pa.addr.Less(s.lo) && !s.hi.Less(pa.addr) {
				names = append(names, c.name)
				break
			}
		}
	}
	if len(names) > n {
		slices.Sort(names) // the address sets' names are sorted already
	}
	e.idNames = names
	return names
}

// cidrInUse is a live ipBlock set that classes of a direction use.
type cidrInUse struct {
	name  string
	spans []span
}

// cidrsChanged notes that a live ipBlock set came, went, or began or
// stopped being used in a direction.
func (e *Engine) cidrsChanged() {
	e.cidrDirty = true
	e.usedCidrs = nil
}

// usedCidrsOf lists the live ipBlock sets that classes of space d use,
// for identityOf, which asks it of every address it settles: made again
// only after they changed (cidrsChanged).
func (e *Engine) usedCidrsOf(d int) []cidrInUse {
	if e.usedCidrs == nil {
		e.usedCidrs = &[nSpaces][]cidrInUse{}
		for name, spans := range e.cidrs {
			for d, n := range e.sets[name].uses {
				if n > 0 {
					e.usedCidrs[d] = append(e.usedCidrs[d], cidrInUse{name, spans})
				}
			}
		}
	}
	return e.usedCidrs[d]
}

func describeID(sets map[string]bool) string {
	return strings.Join(sortedKeys(sets), ",")
}

// settle brings identities up to date with what the change did: the
// addresses whose memberships changed move to their new identity, the cidr
// maps follow the live ipBlock sets, and local pods whose class changed get
// their elements in every identity's map again.
func (e *Engine) settle() {
	for e.cidrDirty || len(e.dirty) > 0 {
		e.settleAddrs()
	}
	for _, key := range sortedKeys(e.podDirty) {
		delete(e.podDirty, key)
		for _, ids := range e.ids {
			for _, id := range ids {
				e.placeIn(id, key)
			}
		}
	}
	if e.cidrDirty || len(e.dirty) > 0 {
		e.settle() // a group built above made a set
	}
}

func (e *Engine) settleAddrs() {
	if e.cidrDirty {
		e.cidrDirty = false
		for _, pa := range e.addrs {
			if pa.id != [nSpaces]*identity{} {
				e.markDirty(pa)
			}
		}
		for _, sp := range spaces {
			e.cidrMaps(sp)
		}
	}
	// The identity the last address of each space moved to: a new peer
	// set moves its thousands of members mostly into a few identities, and
	// naming the identity (a join and a map lookup) was a fifth of each move.
	var last [nSpaces]*identity
	for len(e.dirty) > 0 {
		pa := e.dirty[len(e.dirty)-1]
		e.dirty = e.dirty[:len(e.dirty)-1]
		pa.dirty = false
		fam := nft.FamilyOf(pa.addr)
		for _, sp := range spaces {
			d := sp.index()
			old := pa.id[d]
			if old == nil && e.setsInUse[d] == 0 {
				continue // the space uses no set: no identity (the admin tiers' spaces, without admin policies)
			}
			names := e.identityOf(pa, sp)
			if old == nil && len(names) == 0 || old != nil && slices.Equal(old.names, names) {
				continue
			}
			var id *identity
			if len(names) > 0 {
				if l := last[d]; l != nil && l.refs > 0 && slices.Equal(l.names, names) {
					id = l
					id.refs++
				} else {
					id = e.acquireID(sp, strings.Join(names, ","), fam, names)
					last[d] = id
				}
			}
			e.setID(pa, d, fam, id)
			if old != nil {
				e.dropID(sp, old)
			}
		}
		if pa.unused() {
			delete(e.addrs, pa.addr)
		}
	}
}

// unused: the address is in no set and no ids map.
func (pa *peerAddr) unused() bool {
	return len(pa.sets) == 0 && pa.id == [nSpaces]*identity{} && !pa.dirty
}

// setID gives an address its identity in a space: its element in the
// space's ids map, which is a view of the addresses' records (idsView).
// Each move is noted, in order, with the identity it left: an address's
// first move in a space since the touched record was last taken left what
// the kernel holds, so the touched record gets the maps' exact changes
// (flushMoves) without a visit to the addresses' records. An event that
// moves thousands of addresses writes no second map of them, and the diff
// looks none of them up.
func (e *Engine) setID(pa *peerAddr, d int, fam nft.Family, id *identity) {
	switch f := famIndex(fam); {
	case pa.id[d] == nil && id != nil:
		e.idsLen[d][f]++
	case pa.id[d] != nil && id == nil:
		e.idsLen[d][f]--
	}
	e.moves = append(e.moves, idMove{addr: pa.addr, d: d, was: pa.id[d], id: id})
	pa.id[d] = id
}

// idMove is an address's move to another identity (or none) in a space.
type idMove struct {
	addr    netip.Addr
	d       int
	was, id *identity
}

// flushMoves hands the ids maps' changes since the last call to the
// touched record: for each moved address and space, the element the
// kernel holds out (the identity before its first move) and the element
// now in (after its last), where they differ, sorted by address as a diff
// sorts them (nft.SortElems), so that it need not move them.
func (e *Engine) flushMoves() {
	moves := e.moves
	if len(moves) == 0 {
		return
	}
	order := nft.AddrOrder(len(moves), func(i int) netip.Addr { return moves[i].addr })

	// Each address's run of moves: per space, the first one's was and the
	// last one's identity. Counted first, so that each list is made once
	// at its size (growing them moved the 72-byte elements again and again).
	type change struct {
		addr    netip.Addr
		d, f    int
		was, id *identity
	}
	changes := make([]change, 0, len(moves))
	var n [nSpaces][2][2]int // by space, family, delete or add
	for lo := 0; lo < len(order); {
		addr := moves[order[lo]].addr
		hi := lo + 1
		for hi < len(order) && moves[order[hi]].addr == addr {
			hi++
		}
		f := famIndex(nft.FamilyOf(addr))
		var seen uint8
		for i := lo; i < hi; i++ {
			first := moves[order[i]]
			if seen&(1<<first.d) != 0 {
				continue
			}
			seen |= 1 << first.d
			last := first
			for j := i + 1; j < hi; j++ {
				if m := moves[order[j]]; m.d == first.d {
					last = m
				}
			}
			if chainOf(first.was) != chainOf(last.id) {
				changes = append(changes, change{addr, first.d, f, first.was, last.id})
				n[first.d][f][0] += b2i(first.was != nil)
				n[first.d][f][1] += b2i(last.id != nil)
			}
		}
		lo = hi
	}
	clear(moves)
	e.moves = moves[:0]

	var del, add [nSpaces][2][]nft.Elem
	for d := range n {
		for f, c := range n[d] {
			del[d][f], add[d][f] = make([]nft.Elem, 0, c[0]), make([]nft.Elem, 0, c[1])
		}
	}
	for _, c := range changes {
		if c.was != nil {
			del[c.d][c.f] = append(del[c.d][c.f], nft.Elem{Addr: c.addr, Chain: c.was.chainName})
		}
		if c.id != nil {
			add[c.d][c.f] = append(add[c.d][c.f], nft.Elem{Addr: c.addr, Chain: c.id.chainName})
		}
	}
	for d := range del {
		for f := range del[d] {
			e.touched.Moved(idsMaps[d][f], del[d][f], add[d][f])
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func chainOf(id *identity) string {
	if id == nil {
		return ""
	}
	return id.chainName
}

// idsView is an ids map of one space and family as the addresses' records
// hold it: the set in the ruleset is this view, not a copy (nft.NewView).
type idsView struct {
	e   *Engine
	d   int
	fam nft.Family
}

func (v idsView) Verdict(a netip.Addr) (string, bool) {
	pa := v.e.addrs[a]
	if pa == nil || pa.id[v.d] == nil || nft.FamilyOf(a) != v.fam {
		return "", false
	}
	return pa.id[v.d].chainName, true
}

func (v idsView) All() iter.Seq2[netip.Addr, string] {
	return func(yield func(netip.Addr, string) bool) {
		if v.Len() == 0 {
			return // most spaces' maps, and IPv6's in IPv4 clusters: no walk of every address
		}
		for a, pa := range v.e.addrs {
			if id := pa.id[v.d]; id != nil && nft.FamilyOf(a) == v.fam && !yield(a, id.chainName) {
				return
			}
		}
	}
}

func (v idsView) Len() int { return v.e.idsLen[v.d][famIndex(v.fam)] }

// useSets counts the class chains of a space that use sets as peers (by
// +1 or -1): a set's first and last use in a space change the identity of
// its members there. Identities are made per space, of the sets that
// space's classes use: at L (50,000 pods) the egress rules' peers hold 480
// addresses, the ingress rules' 27,690; one map for both held 27,810 in
// each.
func (e *Engine) useSets(names []string, sp space, by int) {
	d := sp.index()
	for _, name := range names {
		ls := e.sets[name]
		if ls == nil {
			continue
		}
		was := ls.uses[d]
		if ls.uses[d] += by; (was == 0) == (ls.uses[d] == 0) {
			continue
		}
		if was == 0 {
			e.setsInUse[d]++
		} else {
			e.setsInUse[d]--
		}
		if _, ok := e.cidrs[name]; ok {
			e.cidrsChanged()
		}
		for _, c := range e.counts[name] {
			e.markDirty(c.addr)
		}
	}
}

// acquireID takes a reference to an identity, making it (its chains and
// maps, with an element for every local pod whose class it has a rule for)
// when new: a new identity costs the node's local pods, not the cluster.
func (e *Engine) acquireID(sp space, desc string, fam nft.Family, names []string) *identity {
	d := sp.index()
	if id, ok := e.ids[d][desc]; ok {
		id.refs++
		return id
	}
	id := newIdentity(sp, desc, fam, names)
	id.refs = 1
	e.ids[d][desc] = id
	if desc != noneID {
		id.base = e.acquireBase(sp, fam, names)
	}
	ch := &nft.Chain{Name: id.chainName}
	for _, f := range id.families() {
		m := id.idMap(f)
		e.rs.AddSet(nft.NewSet(m, mapType(f), fmt.Sprintf("local pods -> their group for identity %s (%s)", desc, sp.prefix())))
		e.touched.Set(m)
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: m, Family: f, Src: sp.dir == model.Egress},
			Comment: "identity " + desc})
	}
	if id.base != nil {
		comment := "the rules its ipBlocks alone match"
		if id.base.desc == noneID {
			comment = "the rules of any peer"
		}
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Goto, Chain: id.base.chainName}, Comment: comment})
	}
	e.rs.AddChain(ch)
	e.touched.Chain(ch.Name)
	for key, pl := range e.podClass {
		if e.mayPlace(id, pl) {
			e.placeIn(id, key)
		}
	}
	return id
}

// acquireBase takes a reference to the base of the identity of names: the
// identity of its ipBlock sets, or the empty one when it has none or has
// nothing else.
func (e *Engine) acquireBase(sp space, fam nft.Family, names []string) *identity {
	var cidrs []string
	for _, n := range names {
		if _, ok := e.cidrs[n]; ok {
			cidrs = append(cidrs, n)
		}
	}
	if len(cidrs) == 0 || len(cidrs) == len(names) {
		return e.acquireID(sp, noneID, 0, nil)
	}
	return e.acquireID(sp, strings.Join(cidrs, ","), fam, cidrs)
}

// releaseID drops a reference; the last one removes the identity.
func (e *Engine) releaseID(sp space, desc string) {
	e.dropID(sp, e.ids[sp.index()][desc])
}

// dropID is releaseID for an identity in hand.
func (e *Engine) dropID(sp space, id *identity) {
	if id.refs--; id.refs > 0 {
		return
	}
	for _, key := range sortedKeys(id.elems) {
		e.setPlace(id, key, nil)
	}
	for _, f := range id.families() {
		m := id.idMap(f)
		delete(e.rs.Sets, m)
		delete(e.counts, m)
		e.touched.Set(m)
	}
	delete(e.rs.Chains, id.chainName)
	e.touched.Chain(id.chainName)
	delete(e.ids[sp.index()], id.desc)
	if id.base != nil {
		e.dropID(sp, id.base)
	}
}

func dirIndex(dir model.Direction) int {
	if dir == model.Egress {
		return 1
	}
	return 0
}

// placeIn puts a local pod's elements in an identity's maps: one per
// address of the identity's family, to its group chain, when its class (in
// that space) has a rule the identity matches and its base does not match
// the same rules (the identity's chain goes on to its base).
func (e *Engine) placeIn(id *identity, key string) {
	var now []nft.Elem
	if pl := e.podClass[key]; pl != nil && pl.keys[id.sp.index()] != nil {
		cls := pl.keys[id.sp.index()]
		if m := e.matched(id.sp, cls, id); len(m) > 0 && (id.base == nil || !sameRules(m, e.matched(id.sp, cls, id.base))) {
			g := e.groupName(id.sp, signature(id, m))
			for _, f := range id.families() {
				for _, ip := range pl.addrs {
					if nft.FamilyOf(ip) == f {
						now = append(now, nft.Elem{Addr: ip, Chain: g})
					}
				}
			}
		}
	}
	e.setPlace(id, key, now)
}

// setPlace replaces a pod's elements in an identity's map of one space:
// new groups are taken before old ones are released.
func (e *Engine) setPlace(id *identity, key string, now []nft.Elem) {
	m := id.elems
	was := m[key]
	if slices.Equal(was, now) {
		return
	}
	for _, el := range now {
		e.ensure(e.groupOf(id.sp, key, id, el.Chain))
		e.addElem(id.idMap(nft.FamilyOf(el.Addr)), el)
	}
	for _, el := range was {
		e.delElem(id.idMap(nft.FamilyOf(el.Addr)), el)
		e.release(el.Chain)
	}
	if len(now) == 0 {
		delete(m, key)
	} else {
		m[key] = now
	}
}

// groupOf is the def of the group chain named name: live already, or the
// one of the pod's class now.
func (e *Engine) groupOf(sp space, key string, id *identity, name string) chainDef {
	if lc, ok := e.chains[name]; ok {
		return lc.def
	}
	return groupDef(sp, signature(id, e.matched(sp, e.podClass[key].keys[sp.index()], id)))
}

// signature says what a group chain holds: the families of its identity's
// addresses and the rules (policy and index, by policy key and index: a
// tier's priorities order them in the chain, not in its name) it matches.
// The identities that match the same rules share a group chain, whatever
// the classes of the pods they send there: a pod that moves to a class new
// to the node mostly finds its groups made by the classes that share its
// policies.
func signature(id *identity, rules []matchedRule) string {
	// Appended, not formatted: placing a local pod in an identity asks for
	// it, and fmt was a tenth of the engine's time over the S events.
	b := make([]byte, 0, 64)
	b = strconv.AppendInt(append(b, 'v'), int64(id.fam), 10)
	for _, r := range rules {
		b = append(append(append(b, ' '), r.key...), '#')
		b = strconv.AppendInt(b, int64(r.index), 10)
	}
	return string(b)
}

// parseSignature is signature's inverse: the families and the rules, by
// policy key and index.
func parseSignature(sig string) ([]nft.Family, map[string]bool) {
	fields := strings.Fields(sig)
	fams := families
	if len(fields) > 0 && fields[0] != "v0" {
		var f int
		fmt.Sscanf(fields[0], "v%d", &f)
		fams = []nft.Family{nft.Family(f)}
	}
	rules := map[string]bool{}
	if len(fields) > 1 {
		for _, r := range fields[1:] {
			rules[r] = true
		}
	}
	return fams, rules
}

// groupName is groupDef(…).name(), remembered.
func (e *Engine) groupName(sp space, sig string) string {
	k := groupKey{sp, sig}
	if n, ok := e.groupNames[k]; ok {
		return n
	}
	n := groupDef(sp, sig).name()
	if len(e.groupNames) >= 1<<16 {
		clear(e.groupNames) // a cache, not a record: bounded
	}
	e.groupNames[k] = n
	return n
}

type groupKey struct {
	sp  space
	sig string
}

// groupDef is the group chain of a signature; its keys are the policies
// the signature names, which a change of one of them rebuilds.
func groupDef(sp space, sig string) chainDef {
	var keys []string
	for _, r := range strings.Fields(sig)[1:] {
		key := r[:strings.LastIndexByte(r, '#')]
		if len(keys) == 0 || keys[len(keys)-1] != key {
			keys = append(keys, key)
		}
	}
	return chainDef{kind: chainGroup, dir: sp.dir, layer: sp.tier, keys: keys, id: sig}
}

// sameRules: the same rules, in the same order.
func sameRules(a, b []matchedRule) bool {
	return slices.EqualFunc(a, b, func(x, y matchedRule) bool { return x.key == y.key && x.index == y.index })
}

// matchedRule is one rule of a class's policies that an identity matches.
type matchedRule struct {
	key   string // the policy's
	index int
	match *model.Match
}

// matched lists the rules of a class's policies in the space's direction
// that the identity matches, by policy key and rule index.
func (e *Engine) matched(sp space, cls []string, id *identity) []matchedRule {
	var out []matchedRule
	add := func(key string, r *model.Match, index int) {
		if e.peerOf(sp.dir, *r, id) {
			out = append(out, matchedRule{key, index, r})
		}
	}
	for _, key := range cls {
		if sp.tier == npTier {
			if p := e.c.Policies[key]; p != nil {
				for i := range p.Rules[sp.dir] {
					add(key, &p.Rules[sp.dir][i].Match, p.Rules[sp.dir][i].Index)
				}
			}
		} else if p := e.c.TierPolicies[key]; p != nil {
			for i := range p.Rules[sp.dir] {
				add(key, &p.Rules[sp.dir][i].Match, p.Rules[sp.dir][i].Index)
			}
		}
	}
	return out
}

// peerOf reports whether a rule's peers hold the identity's addresses.
func (e *Engine) peerOf(dir model.Direction, m model.Match, id *identity) bool {
	if m.AllPeers {
		return true
	}
	if id.fam == 0 {
		return false
	}
	for _, s := range e.peerSetNames(dir, m.Peers) {
		if _, ok := slices.BinarySearch(id.names, s); ok {
			return true
		}
	}
	return false
}

// peerSetNames are the names of the sets a rule's peers match with, of
// both families: computed once per peer list (describing selectors and
// hashing names is most of what matching an identity costs).
func (e *Engine) peerSetNames(dir model.Direction, peers []model.Peer) []string {
	if len(peers) == 0 {
		return nil
	}
	key := peerKey{&peers[0], len(peers), dir}
	if names, ok := e.peerNames[key]; ok {
		return names
	}
	// Names only: a set no class keeps is one no identity holds.
	e.dry = true
	defer func() { e.dry = false }()
	names := []string{}
	for _, ms := range e.peerMatches(dir, peers) {
		for _, x := range ms {
			if a, ok := x.(nft.MatchAddrInSet); ok {
				names = append(names, a.Set)
			}
		}
	}
	e.peerNames[key] = names
	return names
}

// forgetPeerNames drops the cached set names of a policy's rules (match
// gives a rule's match), which are about to be replaced. The cache is
// keyed by each rule's peer list, so the other policies' entries stay
// valid: clearing it all made a NetworkPolicy add at L name again the
// peers of every rule of the node's classes when new identities placed
// the local pods, half of the add's time.
func forgetPeerNames[R any](e *Engine, rules [2][]R, match func(*R) *model.Match) {
	for d := range rules {
		for i := range rules[d] {
			if peers := match(&rules[d][i]).Peers; len(peers) > 0 {
				delete(e.peerNames, peerKey{&peers[0], len(peers), model.Direction(d)})
			}
		}
	}
}

// peerKey is a rule's peer list by identity: a policy's rules are replaced,
// never changed in place, when the policy changes (and its entries are
// forgotten then; an entry's key keeps its peers alive, so no new list can
// take the address of one still cached).
type peerKey struct {
	first *model.Peer
	n     int
	dir   model.Direction
}

// groupChain judges the pods that identities with its signature send to
// it: the rules they match, in the tier's order (NetworkPolicies' by
// policy key; admin and baseline policies' by priority), first match wins,
// each going to its verdict chain.
func (e *Engine) groupChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	fams, in := parseSignature(d.id)
	var run []groupRule // numeric-port rules not yet emitted
	flush := func(allPorts *groupRule) {
		if allPorts != nil && len(run) == 1 {
			run = nil // a port map of the rule alone would say the same as its goto
		}
		if len(run) > 0 {
			if r := e.portMapRule(d, run); r != nil {
				ch.Rules = append(ch.Rules, r)
			}
			run = nil
		}
		if allPorts != nil {
			// Protocols without ports (and ports no earlier rule took):
			// the first rule of every port.
			ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Goto, Chain: allPorts.verdict.name()}, Comment: allPorts.comment})
			e.groupTargets = append(e.groupTargets, allPorts.verdict)
		}
	}
	for _, r := range e.groupRules(d, in) {
		if r.audit {
			// An audit policy decides nothing: its own chain counts and
			// logs what it would drop and returns here (tierChain), in
			// its place in the tier's order.
			flush(nil)
			ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Jump, Chain: r.verdict.name()}, Comment: r.comment})
			e.groupTargets = append(e.groupTargets, r.verdict)
			continue
		}
		if r.match.AllPorts {
			run = append(run, r)
			flush(&r)
			return ch // nothing after it can match first
		}
		var named []model.Port
		for _, p := range r.match.Ports {
			if p.Name != "" {
				named = append(named, p)
			}
		}
		run = append(run, r)
		if len(named) == 0 {
			continue
		}
		// A rule with named ports keeps its place: its numeric ports join
		// the run before it, then its named ports are looked up.
		flush(nil)
		for _, port := range named {
			for _, f := range fams {
				m := nft.MatchDaddrProtoPortInSet{Family: f, Set: e.namedPortSet(d.dir, f, port)}
				ch.Rules = append(ch.Rules, &nft.Rule{Matches: []nft.Match{m}, Verdict: nft.Verdict{Kind: nft.Goto, Chain: r.verdict.name()}, Comment: r.comment})
			}
		}
		e.groupTargets = append(e.groupTargets, r.verdict)
	}
	flush(nil)
	return ch
}

// groupRule is one rule of a group chain: a matched rule and the chain
// that gives its verdict, or (audit) an audit policy's chain to jump to.
type groupRule struct {
	matchedRule
	verdict chainDef
	comment string
	audit   bool
}

// groupRules are the rules a group's signature lists, in the tier's
// order.
func (e *Engine) groupRules(d chainDef, in map[string]bool) []groupRule {
	var out []groupRule
	if d.layer == npTier {
		for _, key := range d.keys {
			p := e.c.Policies[key]
			if p == nil {
				continue
			}
			for i, r := range p.Rules[d.dir] {
				if in[fmt.Sprintf("%s#%d", key, r.Index)] {
					v := chainDef{kind: chainVerdict, dir: d.dir, keys: []string{key}, id: fmt.Sprint(r.Index)}
					out = append(out, groupRule{matchedRule{key, r.Index, &p.Rules[d.dir][i].Match}, v, ruleComment(key, d.dir, r.Index), false})
				}
			}
		}
		return out
	}
	for _, p := range e.tierPolicies(d.keys) {
		for i, r := range p.Rules[d.dir] {
			if !in[fmt.Sprintf("%s#%d", p.Key(), r.Index)] {
				continue
			}
			if p.Audit {
				v := chainDef{kind: chainTierPolicy, dir: d.dir, tier: p.Tier, keys: []string{p.Key()}}
				out = append(out, groupRule{verdict: v, comment: fmt.Sprintf("%s priority %d (audit)", p.Key(), p.Priority), audit: true})
				break
			}
			v := chainDef{kind: chainTierVerdict, dir: d.dir, tier: p.Tier, keys: []string{p.Key()}, id: fmt.Sprint(r.Index)}
			out = append(out, groupRule{matchedRule{p.Key(), r.Index, &p.Rules[d.dir][i].Match}, v, tierRuleComment(p, d.dir, r), false})
		}
	}
	return out
}

func ruleComment(key string, dir model.Direction, index int) string {
	return fmt.Sprintf("%s %s rule %d", key, dir, index)
}

// portMapRule is one port lookup for a run of rules: each protocol's ports
// cut into ranges, each range going to the first rule that covers it.
func (e *Engine) portMapRule(d chainDef, run []groupRule) *nft.Rule {
	type cover struct {
		lo, hi int
		v      chainDef
	}
	byProto := map[uint8][]cover{}
	for _, r := range run {
		v := r.verdict
		if r.match.AllPorts {
			for _, p := range []uint8{nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP} {
				byProto[p] = append(byProto[p], cover{0, 65535, v})
			}
			continue
		}
		for _, p := range r.match.Ports {
			if p.Name != "" {
				continue
			}
			lo, hi := int(p.Port), int(p.EndPort)
			if p.Port == 0 {
				lo, hi = 0, 65535
			}
			byProto[p.Proto] = append(byProto[p.Proto], cover{lo, hi, v})
		}
	}
	var elems []nft.Elem
	var desc []string
	targets := map[string]chainDef{}
	for proto, covers := range byProto {
		// Cut at every boundary; each piece goes to the first cover that
		// holds it, and adjacent pieces of the same rule join.
		cuts := []int{}
		for _, c := range covers {
			cuts = append(cuts, c.lo, c.hi+1)
		}
		slices.Sort(cuts)
		cuts = slices.Compact(cuts)
		var last *nft.Elem
		for i := 0; i+1 < len(cuts); i++ {
			lo, hi := cuts[i], cuts[i+1]-1
			var win *chainDef
			for j := range covers {
				if covers[j].lo <= lo && hi <= covers[j].hi {
					win = &covers[j].v
					break
				}
			}
			if win == nil {
				last = nil
				continue
			}
			name := win.name()
			targets[name] = *win
			if last != nil && last.Chain == name && int(last.PortEnd)+1 == lo {
				last.PortEnd = uint16(hi)
				continue
			}
			elems = append(elems, nft.Elem{Proto: proto, Port: uint16(lo), PortEnd: uint16(hi), Chain: name})
			last = &elems[len(elems)-1]
		}
	}
	if len(elems) == 0 {
		return nil
	}
	elems = nft.SortElems(elems)
	for _, el := range elems {
		desc = append(desc, el.Text(nft.MapProtoPortVerdict))
	}
	identity := strings.Join(desc, ", ")
	name := nft.Name("ports-to", identity)
	if !e.hasSet(name) {
		e.newSet(nft.NewSet(name, nft.MapProtoPortVerdict, "first rule per port: "+identity), nil).Add(elems...)
	}
	for _, k := range sortedKeys(targets) {
		e.groupTargets = append(e.groupTargets, targets[k])
	}
	return &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: name, ProtoPort: true}, Comment: "first rule per port"}
}

// verdictChain accepts for one NetworkPolicy rule, with its counter,
// comment and log.
func (e *Engine) verdictChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	p := e.c.Policies[d.keys[0]]
	var index int
	fmt.Sscan(d.id, &index)
	if p == nil {
		return ch
	}
	r := &nft.Rule{Counter: true, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: ruleComment(p.Key(), d.dir, index)}
	ch.Rules = e.withOrigin([]*nft.Rule{r}, npOrigin(d.dir, p.Key(), index), p.LogAccepts)
	return ch
}

// cidrMaps rebuilds a space's cidr maps from the ipBlock sets its classes
// use: the ranges cut at every boundary, each piece to the identity of the
// sets that contain it. They change only with policies.
func (e *Engine) cidrMaps(sp space) {
	d := sp.index()
	for _, fam := range families {
		var cuts []netip.Addr
		var names []string
		for name, spans := range e.cidrs {
			if len(spans) == 0 || nft.FamilyOf(spans[0].lo) != fam || e.sets[name].uses[d] == 0 {
				continue
			}
			names = append(names, name)
			for _, s := range spans {
				cuts = append(cuts, s.lo)
				if n := s.hi.Next(); n.IsValid() {
					cuts = append(cuts, n)
				}
			}
		}
		slices.Sort(names)
		slices.SortFunc(cuts, func(a, b netip.Addr) int { return a.Compare(b) })
		cuts = slices.Compact(cuts)
		type piece struct {
			s    span
			desc string
			sets map[string]bool
		}
		var pieces []piece
		for i, lo := range cuts {
			hi := maxAddr(fam)
			if i+1 < len(cuts) {
				hi = cuts[i+1].Prev()
			}
			sets := map[string]bool{}
			for _, n := range names {
				for _, s := range e.cidrs[n] {
					if !lo.Less(s.lo) && !s.hi.Less(lo) {
						sets[n] = true
						break
					}
				}
			}
			if len(sets) == 0 {
				continue
			}
			desc := describeID(sets)
			if k := len(pieces); k > 0 && pieces[k-1].desc == desc && pieces[k-1].s.hi.Next() == lo {
				pieces[k-1].s.hi = hi
				continue
			}
			pieces = append(pieces, piece{span{lo, hi}, desc, sets})
		}
		// New pieces first (their identities taken), then the old go.
		old := e.cidrPieces[d][fam]
		var now []cidrPiece
		for _, p := range pieces {
			id := e.acquireID(sp, p.desc, fam, sortedKeys(p.sets))
			now = append(now, cidrPiece{p.s, p.desc})
			e.addElem(cidrIDsMap(sp, fam), nft.Elem{Addr: p.s.lo, AddrEnd: p.s.hi, Chain: id.chainName})
		}
		for _, p := range old {
			e.delElem(cidrIDsMap(sp, fam), nft.Elem{Addr: p.s.lo, AddrEnd: p.s.hi, Chain: e.ids[d][p.desc].chainName})
			e.releaseID(sp, p.desc)
		}
		e.cidrPieces[d][fam] = now
	}
}

// cidrPiece is one element of a cidr map: a range and its identity.
type cidrPiece struct {
	s    span
	desc string
}

func maxAddr(f nft.Family) netip.Addr {
	if f == nft.IPv6 {
		var b [16]byte
		for i := range b {
			b[i] = 0xff
		}
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{0xff, 0xff, 0xff, 0xff})
}

// notePlace records a local pod's classes (NetworkPolicy, admin,
// baseline) and addresses from its map entries; a change makes settle
// place it again in every identity.
func (e *Engine) notePlace(key string, entries []entry) {
	var now podPlace
	var classes [nSpaces]chainDef
	for _, en := range entries {
		sp, ok := spaceOfClass(en.target)
		if !ok {
			continue
		}
		now.keys[sp.index()] = en.target.keys
		classes[sp.index()] = en.target
		if !slices.Contains(now.addrs, en.elem.Addr) {
			now.addrs = append(now.addrs, en.elem.Addr)
		}
	}
	old := e.podClass[key]
	if !slices.ContainsFunc(now.keys[:], func(keys []string) bool { return keys != nil }) {
		if old != nil {
			delete(e.podClass, key)
			e.podDirty[key] = true
		}
		return
	}
	if old == nil || !slices.EqualFunc(old.keys[:], now.keys[:], slices.Equal[[]string]) || !slices.Equal(old.addrs, now.addrs) {
		pl := now // allocated only here: most calls change nothing
		for d, c := range classes {
			if pl.keys[d] != nil {
				pl.chains[d] = c.name()
			}
		}
		e.podClass[key] = &pl
		e.podDirty[key] = true
	}
}

// podPlace is what places a local pod in identities' maps: its class in
// each space (the policy keys, and the class chain's name) and the
// addresses its classes judge.
type podPlace struct {
	keys   [nSpaces][]string
	chains [nSpaces]string
	addrs  []netip.Addr
}

// mayPlace reports whether a local pod's class in an identity's space
// names one of the identity's sets that its base lacks: if none, the
// class's rules match the identity as they match its base and the pod
// has no element in the identity's map. Asking the class chain's peer
// sets spares matching the rules of every local pod's class: at L the
// costliest pod add makes five identities, and placing the node's 91 pods
// in each took a quarter of its engine time in a profile.
func (e *Engine) mayPlace(id *identity, pl *podPlace) bool {
	if id.base == nil {
		return true
	}
	d := id.sp.index()
	if pl.keys[d] == nil {
		return false
	}
	lc := e.chains[pl.chains[d]]
	if lc == nil {
		return true // not built yet: placeIn decides
	}
	for _, s := range lc.peers {
		if _, in := slices.BinarySearch(id.names, s); in && !slices.Contains(id.base.names, s) { // a base holds a few ipBlock sets at most
			return true
		}
	}
	return false
}
