package compile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Peer identities: how a NetworkPolicy class judges a new connection in a
// fixed number of lookups, whatever the number of its policies and rules
// (docs/ruleset.md, "From a pod to its policies").
//
// The identity of a peer address in one direction is the set of matchers
// that hold it among those this direction's classes use as peers: the
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
// that match the same ones share it), in the evaluator's order (policies by key, rules by
// index); runs of numeric-port rules become one port map whose elements
// carry the first rule that covers each range, a rule with named ports stays
// a set lookup of its own (its port depends on the pod that declares it).
// What no group rule takes falls off the group, back into the class chain
// after its jump, to the class's default drop.

// Names of the identity layout's fixed objects.
func peerChain(dir model.Direction) string { return dir.String() + "-peer" }

// IDsMap is the hash verdict map from a peer address to its identity chain.
func IDsMap(dir model.Direction, fam nft.Family) string {
	return idsMaps[dirIndex(dir)][famIndex(fam)]
}

// idsMaps are the ids maps' names, by direction and family: made once,
// they are named for every address an event moves.
var idsMaps = [2][2]string{
	{"ingress-ids-v4", "ingress-ids-v6"},
	{"egress-ids-v4", "egress-ids-v6"},
}

// CidrIDsMap is the interval verdict map from the disjoint ranges of the
// node's ipBlocks to the identity of the addresses in exactly those blocks.
func CidrIDsMap(dir model.Direction, fam nft.Family) string {
	return fmt.Sprintf("%s-cidr-ids-v%d", dir, fam)
}

const noneID = "none"

// identity is one live peer identity of one direction.
type identity struct {
	desc  string // its sets, sorted and joined: the name's source
	dir   model.Direction
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

func newIdentity(dir model.Direction, desc string, fam nft.Family, names []string) *identity {
	id := &identity{desc: desc, dir: dir, fam: fam, names: slices.Clone(names), elems: map[string][]nft.Elem{}}
	if desc == noneID {
		id.chainName = dir.String() + "-id-none"
	} else {
		id.chainName = nft.HashName(dir.String()+"-id", desc)
	}
	for _, f := range families {
		if desc == noneID {
			id.maps[famIndex(f)] = fmt.Sprintf("%s-id-none-v%d", dir, f)
		} else {
			id.maps[famIndex(f)] = nft.HashName(fmt.Sprintf("%s-idmap-v%d", dir, f), desc)
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
	for _, dir := range directions {
		src := dir == model.Ingress
		ch := &nft.Chain{Name: peerChain(dir)}
		for _, fam := range families {
			e.rs.AddSet(nft.NewSet(IDsMap(dir, fam), mapType(fam), fmt.Sprintf("peer addresses -> their identity (%s)", dir)))
			ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: IDsMap(dir, fam), Family: fam, Src: src}, Comment: "peer identity"})
		}
		for _, fam := range families {
			t := nft.MapIPv4IntervalVerdict
			if fam == nft.IPv6 {
				t = nft.MapIPv6IntervalVerdict
			}
			e.rs.AddSet(nft.NewSet(CidrIDsMap(dir, fam), t, fmt.Sprintf("ipBlock ranges -> their identity (%s)", dir)))
			ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: CidrIDsMap(dir, fam), Family: fam, Src: src}, Comment: "ipBlock identity"})
		}
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Goto, Chain: dir.String() + "-id-none"}, Comment: "no identity"})
		e.rs.AddChain(ch)
		e.acquireID(dir, noneID, 0, nil)
	}
}

// peerAddr is what the engine knows of one peer address: the dynamic
// address sets that hold it and its identity in each direction. One
// record, found once: an event that makes or uses a set of thousands of
// pods visits each of them, and lookups in maps of 50,000 addresses were
// most of that time.
type peerAddr struct {
	addr  netip.Addr
	sets  []*liveSet   // by name
	id    [2]*identity // by direction; nil: not in that ids map
	dirty bool         // in Engine.dirty
}

// trackAddr records that an address joined or left a dynamic address set.
func (e *Engine) trackAddr(ls *liveSet, a netip.Addr, in bool) {
	pa := e.addrs[a]
	if pa == nil {
		if !in {
			return
		}
		pa = &peerAddr{addr: a}
		e.addrs[a] = pa
	}
	i, found := slices.BinarySearchFunc(pa.sets, ls.name, func(x *liveSet, name string) int { return strings.Compare(x.name, name) })
	switch {
	case in && !found:
		pa.sets = slices.Insert(pa.sets, i, ls)
	case !in && found:
		pa.sets = slices.Delete(pa.sets, i, i+1)
	}
	e.markDirty(pa)
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

// identityOf names the sets that make an address's identity in dir now,
// sorted (valid until the next call): none when no dynamic set that dir's
// classes use holds it (the cidr map or the empty identity answers for
// it).
func (e *Engine) identityOf(pa *peerAddr, dir model.Direction) []string {
	d := dirIndex(dir)
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

// usedCidrsOf lists the live ipBlock sets that classes of direction d
// use, for identityOf, which asks it of every address it settles: made
// again only after they changed (cidrsChanged).
func (e *Engine) usedCidrsOf(d int) []cidrInUse {
	if e.usedCidrs == nil {
		e.usedCidrs = &[2][]cidrInUse{}
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
			if pa.id != [2]*identity{} {
				e.markDirty(pa)
			}
		}
		for _, dir := range directions {
			e.cidrMaps(dir)
		}
	}
	for len(e.dirty) > 0 {
		pa := e.dirty[len(e.dirty)-1]
		e.dirty = e.dirty[:len(e.dirty)-1]
		pa.dirty = false
		fam := nft.FamilyOf(pa.addr)
		for _, dir := range directions {
			d := dirIndex(dir)
			names := e.identityOf(pa, dir)
			old := pa.id[d]
			if old == nil && len(names) == 0 || old != nil && slices.Equal(old.names, names) {
				continue
			}
			var id *identity
			if len(names) > 0 {
				id = e.acquireID(dir, strings.Join(names, ","), fam, names)
				e.idsElem(d, fam, nft.Elem{Addr: pa.addr, Chain: id.chainName}, true)
			}
			pa.id[d] = id
			if old != nil {
				e.idsElem(d, fam, nft.Elem{Addr: pa.addr, Chain: old.chainName}, false)
				e.releaseID(dir, old.desc)
			}
		}
		if len(pa.sets) == 0 && pa.id == [2]*identity{} && !pa.dirty {
			delete(e.addrs, pa.addr)
		}
	}
	e.flushIDsTouched()
}

// idsElem adds or deletes an address's element in an ids map. Each address
// has one element there, so no count is kept. The touched record gets them
// at the end of the settle (flushIDsTouched): one append per map instead
// of three map lookups per element.
func (e *Engine) idsElem(d int, fam nft.Family, el nft.Elem, in bool) {
	f := famIndex(fam)
	s := e.rs.Sets[idsMaps[d][f]]
	if in {
		s.Add(el)
	} else {
		delete(s.Elements, el)
	}
	e.idsTouched[d][f] = append(e.idsTouched[d][f], el)
}

// flushIDsTouched hands the ids maps' changed elements to the touched record.
func (e *Engine) flushIDsTouched() {
	for d := range e.idsTouched {
		for f, els := range e.idsTouched[d] {
			e.touched.Elem(idsMaps[d][f], els...)
			e.idsTouched[d][f] = els[:0]
		}
	}
}

// useSets counts the class chains of dir that use sets as peers (by +1
// or -1): a set's first and last use in a direction change the identity
// of its members there. Identities are made per direction, of the sets
// that direction's classes use: at L (50,000 pods) the egress rules'
// peers hold 480 addresses, the ingress rules' 27,690; one map for both
// held 27,810 in each.
func (e *Engine) useSets(names []string, dir model.Direction, by int) {
	d := dirIndex(dir)
	for _, name := range names {
		ls := e.sets[name]
		if ls == nil {
			continue
		}
		was := ls.uses[d]
		if ls.uses[d] += by; (was == 0) == (ls.uses[d] == 0) {
			continue
		}
		if _, ok := e.cidrs[name]; ok {
			e.cidrsChanged()
		}
		for el := range e.counts[name] {
			e.markDirty(e.addrs[el.Addr])
		}
	}
}

// acquireID takes a reference to an identity, making it (its chains and
// maps, with an element for every local pod whose class it has a rule for)
// when new: a new identity costs the node's local pods, not the cluster.
func (e *Engine) acquireID(dir model.Direction, desc string, fam nft.Family, names []string) *identity {
	d := dirIndex(dir)
	if id, ok := e.ids[d][desc]; ok {
		id.refs++
		return id
	}
	id := newIdentity(dir, desc, fam, names)
	id.refs = 1
	e.ids[d][desc] = id
	if desc != noneID {
		id.base = e.acquireBase(dir, fam, names)
	}
	ch := &nft.Chain{Name: id.chainName}
	for _, f := range id.families() {
		m := id.idMap(f)
		e.rs.AddSet(nft.NewSet(m, mapType(f), fmt.Sprintf("local pods -> their group for identity %s (%s)", desc, dir)))
		e.touched.Set(m)
		ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Vmap, Map: m, Family: f, Src: dir == model.Egress},
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
	for key := range e.npClass {
		e.placeIn(id, key)
	}
	return id
}

// acquireBase takes a reference to the base of the identity of names: the
// identity of its ipBlock sets, or the empty one when it has none or has
// nothing else.
func (e *Engine) acquireBase(dir model.Direction, fam nft.Family, names []string) *identity {
	var cidrs []string
	for _, n := range names {
		if _, ok := e.cidrs[n]; ok {
			cidrs = append(cidrs, n)
		}
	}
	if len(cidrs) == 0 || len(cidrs) == len(names) {
		return e.acquireID(dir, noneID, 0, nil)
	}
	return e.acquireID(dir, strings.Join(cidrs, ","), fam, cidrs)
}

// releaseID drops a reference; the last one removes the identity.
func (e *Engine) releaseID(dir model.Direction, desc string) {
	id := e.ids[dirIndex(dir)][desc]
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
	delete(e.ids[dirIndex(dir)], desc)
	if id.base != nil {
		e.releaseID(dir, id.base.desc)
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
// that direction) has a rule the identity matches and its base does not
// match the same rules (the identity's chain goes on to its base).
func (e *Engine) placeIn(id *identity, key string) {
	var now []nft.Elem
	cls := e.npClass[key][dirIndex(id.dir)]
	if m := e.matched(id.dir, cls, id); cls != nil && len(m) > 0 && (id.base == nil || !sameRules(m, e.matched(id.dir, cls, id.base))) {
		g := e.groupName(id.dir, cls, signature(id, m))
		for _, f := range id.families() {
			for _, ip := range e.npAddrs[key] {
				if nft.FamilyOf(ip) == f {
					now = append(now, nft.Elem{Addr: ip, Chain: g})
				}
			}
		}
	}
	e.setPlace(id, key, now)
}

// setPlace replaces a pod's elements in an identity's map of one direction:
// new groups are taken before old ones are released.
func (e *Engine) setPlace(id *identity, key string, now []nft.Elem) {
	m := id.elems
	was := m[key]
	if slices.Equal(was, now) {
		return
	}
	for _, el := range now {
		e.ensure(e.groupOf(id.dir, key, id, el.Chain))
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
func (e *Engine) groupOf(dir model.Direction, key string, id *identity, name string) chainDef {
	if lc, ok := e.chains[name]; ok {
		return lc.def
	}
	cls := e.npClass[key][dirIndex(dir)]
	return groupDef(dir, cls, signature(id, e.matched(dir, cls, id)))
}

// signature says what a group chain holds: the families of its identity's
// addresses and the rules (policy and index, in order) it matches. The
// identities that match the same rules of a class share its group chain.
func signature(id *identity, rules []matchedRule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "v%d", id.fam)
	for _, r := range rules {
		fmt.Fprintf(&b, " %s#%d", r.policy.Key(), r.rule.Index)
	}
	return b.String()
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
func (e *Engine) groupName(dir model.Direction, cls []string, id string) string {
	k := groupKey{dir, strings.Join(cls, ","), id}
	if n, ok := e.groupNames[k]; ok {
		return n
	}
	n := groupDef(dir, cls, id).name()
	if len(e.groupNames) >= 1<<16 {
		clear(e.groupNames) // a cache, not a record: bounded
	}
	e.groupNames[k] = n
	return n
}

type groupKey struct {
	dir     model.Direction
	cls, id string
}

func groupDef(dir model.Direction, cls []string, id string) chainDef {
	return chainDef{kind: chainGroup, dir: dir, keys: cls, id: id}
}

// sameRules: the same rules, in the same order.
func sameRules(a, b []matchedRule) bool {
	return slices.EqualFunc(a, b, func(x, y matchedRule) bool { return x.policy == y.policy && x.rule.Index == y.rule.Index })
}

// matchedRule is one NetworkPolicy rule that an identity matches.
type matchedRule struct {
	policy *model.Policy
	rule   model.Rule
}

// matched lists the rules of a class's policies in dir that the identity
// matches, in the evaluator's order.
func (e *Engine) matched(dir model.Direction, cls []string, id *identity) []matchedRule {
	var out []matchedRule
	for _, key := range cls {
		p := e.c.Policies[key]
		if p == nil {
			continue
		}
		for _, r := range p.Rules[dir] {
			if e.peerOf(dir, r.Match, id) {
				out = append(out, matchedRule{p, r})
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

// forgetPeerNames drops the cached set names of a policy's rules, which are
// about to be replaced. The cache is keyed by each rule's peer list, so the
// other policies' entries stay valid: clearing it all made a NetworkPolicy
// add at L name again the peers of every rule of the node's classes when
// new identities placed the local pods, half of the add's time.
func (e *Engine) forgetPeerNames(p *model.Policy) {
	if p == nil {
		return
	}
	for d, rules := range p.Rules {
		for _, r := range rules {
			if len(r.Peers) > 0 {
				delete(e.peerNames, peerKey{&r.Peers[0], len(r.Peers), model.Direction(d)})
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

// groupChain judges the pods of one class against the identities whose
// signature it has: the rules they match, first match wins, each going to
// its verdict chain.
func (e *Engine) groupChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	fams, in := parseSignature(d.id)
	var rules []matchedRule
	for _, key := range d.keys {
		p := e.c.Policies[key]
		if p == nil {
			continue
		}
		for _, r := range p.Rules[d.dir] {
			if in[fmt.Sprintf("%s#%d", key, r.Index)] {
				rules = append(rules, matchedRule{p, r})
			}
		}
	}
	var run []matchedRule // numeric-port rules not yet emitted
	flush := func(allPorts *matchedRule) {
		if len(run) > 0 {
			if r := e.portMapRule(d, run); r != nil {
				ch.Rules = append(ch.Rules, r)
			}
			run = nil
		}
		if allPorts != nil {
			// Protocols without ports (and ports no earlier rule took):
			// the first rule of every port.
			v := e.verdictDef(d.dir, allPorts.policy, allPorts.rule.Index)
			ch.Rules = append(ch.Rules, &nft.Rule{Verdict: nft.Verdict{Kind: nft.Goto, Chain: v.name()}, Comment: ruleComment(allPorts.policy, d.dir, allPorts.rule.Index)})
			e.groupTargets = append(e.groupTargets, v)
		}
	}
	for i := range rules {
		r := &rules[i]
		if r.rule.AllPorts {
			run = append(run, *r)
			flush(r)
			return ch // nothing after it can match first
		}
		var named []model.Port
		for _, p := range r.rule.Ports {
			if p.Name != "" {
				named = append(named, p)
			}
		}
		if len(named) == 0 {
			run = append(run, *r)
			continue
		}
		// A rule with named ports keeps its place: its numeric ports join
		// the run before it, then its named ports are looked up.
		run = append(run, *r)
		flush(nil)
		v := e.verdictDef(d.dir, r.policy, r.rule.Index)
		for _, port := range named {
			for _, f := range fams {
				m := nft.MatchDaddrProtoPortInSet{Family: f, Set: e.namedPortSet(d.dir, f, port)}
				ch.Rules = append(ch.Rules, &nft.Rule{Matches: []nft.Match{m}, Verdict: nft.Verdict{Kind: nft.Goto, Chain: v.name()}, Comment: ruleComment(r.policy, d.dir, r.rule.Index)})
			}
		}
		e.groupTargets = append(e.groupTargets, v)
	}
	flush(nil)
	return ch
}

func ruleComment(p *model.Policy, dir model.Direction, index int) string {
	return fmt.Sprintf("%s %s rule %d", p.Key(), dir, index)
}

// portMapRule is one port lookup for a run of rules: each protocol's ports
// cut into ranges, each range going to the first rule that covers it.
func (e *Engine) portMapRule(d chainDef, run []matchedRule) *nft.Rule {
	type cover struct {
		lo, hi int
		v      chainDef
	}
	byProto := map[uint8][]cover{}
	for _, r := range run {
		v := e.verdictDef(d.dir, r.policy, r.rule.Index)
		if r.rule.AllPorts {
			for _, p := range []uint8{nft.ProtoTCP, nft.ProtoUDP, nft.ProtoSCTP} {
				byProto[p] = append(byProto[p], cover{0, 65535, v})
			}
			continue
		}
		for _, p := range r.rule.Ports {
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

// verdictDef is the chain that accepts for one NetworkPolicy rule, with
// its counter, comment and log.
func (e *Engine) verdictDef(dir model.Direction, p *model.Policy, index int) chainDef {
	return chainDef{kind: chainVerdict, dir: dir, keys: []string{p.Key()}, id: fmt.Sprint(index)}
}

func (e *Engine) verdictChain(d chainDef) *nft.Chain {
	ch := &nft.Chain{Name: d.name()}
	p := e.c.Policies[d.keys[0]]
	var index int
	fmt.Sscan(d.id, &index)
	if p == nil {
		return ch
	}
	r := &nft.Rule{Counter: true, Verdict: nft.Verdict{Kind: nft.Accept}, Comment: ruleComment(p, d.dir, index)}
	ch.Rules = e.withOrigin([]*nft.Rule{r}, npOrigin(d.dir, p.Key(), index), p.LogAccepts)
	return ch
}

// cidrMaps rebuilds dir's cidr maps from the ipBlock sets its classes
// use: the ranges cut at every boundary, each piece to the identity of the
// sets that contain it. They change only with policies.
func (e *Engine) cidrMaps(dir model.Direction) {
	d := dirIndex(dir)
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
			id := e.acquireID(dir, p.desc, fam, sortedKeys(p.sets))
			now = append(now, cidrPiece{p.s, p.desc})
			e.addElem(CidrIDsMap(dir, fam), nft.Elem{Addr: p.s.lo, AddrEnd: p.s.hi, Chain: id.chainName})
		}
		for _, p := range old {
			e.delElem(CidrIDsMap(dir, fam), nft.Elem{Addr: p.s.lo, AddrEnd: p.s.hi, Chain: e.ids[d][p.desc].chainName})
			e.releaseID(dir, p.desc)
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

// notePlace records a local pod's NetworkPolicy class and addresses from
// its map entries; a change makes settle place it again in every identity.
func (e *Engine) notePlace(key string, entries []entry) {
	var cls [2][]string
	var addrs []netip.Addr
	for _, en := range entries {
		if en.target.kind != chainNPClass {
			continue
		}
		cls[dirIndex(en.target.dir)] = en.target.keys
		if !slices.Contains(addrs, en.elem.Addr) {
			addrs = append(addrs, en.elem.Addr)
		}
	}
	old, had := e.npClass[key]
	if cls[0] == nil && cls[1] == nil {
		if had {
			delete(e.npClass, key)
			delete(e.npAddrs, key)
			e.podDirty[key] = true
		}
		return
	}
	if !had || !slices.Equal(old[0], cls[0]) || !slices.Equal(old[1], cls[1]) || !slices.Equal(e.npAddrs[key], addrs) {
		e.npClass[key] = cls
		e.npAddrs[key] = addrs
		e.podDirty[key] = true
	}
}
