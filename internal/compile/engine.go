package compile

import (
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"

	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Engine keeps one node's ruleset compiled as the cluster changes: each
// change re-evaluates only what it can affect and records what it touched,
// so a sync costs in proportion to the change, not to the cluster.
//
// Every chain and set other than the base chains and dispatch maps lives
// while something refers to it: class chains while a local pod's map
// element leads to them, policy chains while a class chain jumps to them,
// sets while a rule uses them. Dynamic sets (pod and node peers, named
// ports) keep, per element, how many pods or nodes put it there.
//
// An Engine is not safe for concurrent use.
type Engine struct {
	node string
	opts model.Options
	c    *model.Cluster
	rs   *nft.Ruleset

	chains map[string]*liveChain
	sets   map[string]*liveSet
	counts map[string]map[nft.Elem]elemCount // counted elements: dynamic sets and verdict maps

	// Dynamic sets of pods, found from a pod: those whose peers can only
	// match pods of some namespaces, by namespace; the others.
	podSetsByNS map[string]map[string]*liveSet
	podSetsAny  map[string]*liveSet
	namedSets   map[string]*liveSet // named ports: by the pods' own ports
	nodeSets    map[string]*liveSet
	domainSets  map[string]*liveSet // fqdn.go

	local map[string][]entry      // local pod key -> its map elements
	known map[string][]netip.Addr // local pod key -> its addresses in the local-pods sets
	// dnsClients: local pod key -> its addresses in the DNS client sets.
	dnsClients map[string][]netip.Addr
	tiers      [2][]*model.TierPolicy // by Tier, in evaluation order

	// Peer identities (identity.go).
	addrs      map[netip.Addr]*peerAddr      // addresses in dynamic address sets or ids maps
	ids        [nSpaces]map[string]*identity // by space: live identities by description
	dirty      []*peerAddr                   // addresses whose memberships changed
	idNames    []string                      // identityOf's buffer
	podDirty   map[string]bool               // local pods whose classes changed
	cidrs      map[string][]span             // live ipBlock sets -> their ranges
	cidrDirty  bool
	setsInUse  [nSpaces]int                        // by space: the live sets its classes use
	usedCidrs  *[nSpaces][]cidrInUse               // by space: the live ipBlock sets used; nil after they change
	moves      []idMove                            // identity changes since the last TakeTouched, in order
	idsLen     [nSpaces][2]int                     // by space and family: the ids maps' elements
	cidrPieces [nSpaces]map[nft.Family][]cidrPiece // by space
	podClass   map[string]*podPlace                // local pod -> its classes and the addresses they judge
	// Filled while a chain is built: a group's verdict chains, a class's
	// peer sets (which identities are made of).
	groupTargets []chainDef
	pinned       []string
	dry          bool // peerMatches only names sets: newSet makes none
	peerNames    map[peerKey][]string
	groupNames   map[groupKey]string
	// filled: a NetworkPolicy's namespace-level peer sets, kept filled
	// whether or not a class uses them (filled.go).
	filled      map[string][]string // policy key -> the sets it keeps
	kept        map[string]*keptSet // by set name
	keptMembers int

	touched *nft.Touched
}

// liveChain is a chain other than a base chain, and what keeps it alive.
type liveChain struct {
	refs    int
	def     chainDef
	reads   []string   // the sets its rules read in the kernel
	peers   []string   // a class chain's peer sets: identities are made of them, no rule reads them
	targets []chainDef // the chains it jumps or goes to
}

// holds are the sets a chain keeps alive: those its rules read and its
// peer sets, each once.
func (lc *liveChain) holds() []string {
	out := slices.Clone(lc.reads)
	for _, s := range lc.peers {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// keepSets takes (by 1) or lets go (by -1) of a chain's sets: a reference
// each, and the counts of their readers and of their uses as peers.
func (e *Engine) keepSets(lc *liveChain, by int) {
	if by > 0 {
		for _, s := range lc.holds() {
			e.sets[s].refs++
		}
	}
	e.readSets(lc.reads, by)
	if sp, ok := spaceOfClass(lc.def); ok {
		e.useSets(lc.peers, sp, by)
	}
	if by < 0 {
		for _, s := range lc.holds() {
			e.releaseSet(s)
		}
	}
}

// liveSet is a set other than a dispatch map, and what keeps it alive.
//
// A set only identities are made of (a NetworkPolicy class's peers) is
// kept here with its members but is not in the ruleset: no kernel rule
// reads it, its members are in the ids maps. It joins the ruleset while a
// chain's rules read it (readers), as the tiers' peer sets do. On one
// node at L (50,000 pods) such sets held 29,781 of the table's 183,133
// elements.
type liveSet struct {
	name    string
	refs    int
	readers int
	uses    [nSpaces]int // by space: class chains that use it as peers (identity.go)
	set     *nft.Set     // in the ruleset while readers > 0; a dynamic set's elements only then (holdsElements)
	def     *setDef      // dynamic sets only: which pods or nodes are members
}

// entry is one map element a local pod contributes, and the chain the
// element leads to.
type entry struct {
	set    string
	elem   nft.Elem
	target chainDef
}

// NewEngine compiles the ruleset of node from c, for an agent with the
// default options. The engine owns c from then on: change it only through
// the engine's Set and Delete.
func NewEngine(c *model.Cluster, node string) *Engine { return NewEngineWith(c, node, model.Options{}) }

// NewEngineWith is NewEngine for an agent run with opts.
func NewEngineWith(c *model.Cluster, node string, opts model.Options) *Engine {
	e := &Engine{
		node:        node,
		opts:        opts,
		c:           c,
		rs:          nft.NewRuleset(),
		chains:      map[string]*liveChain{},
		sets:        map[string]*liveSet{},
		counts:      map[string]map[nft.Elem]elemCount{},
		podSetsByNS: map[string]map[string]*liveSet{},
		podSetsAny:  map[string]*liveSet{},
		namedSets:   map[string]*liveSet{},
		nodeSets:    map[string]*liveSet{},
		domainSets:  map[string]*liveSet{},
		dnsClients:  map[string][]netip.Addr{},
		local:       map[string][]entry{},
		known:       map[string][]netip.Addr{},
		touched:     nft.NewTouched(),
		addrs:       map[netip.Addr]*peerAddr{},
		ids:         [nSpaces]map[string]*identity{{}, {}, {}, {}, {}, {}},
		podDirty:    map[string]bool{},
		cidrs:       map[string][]span{},
		cidrPieces:  [nSpaces]map[nft.Family][]cidrPiece{{}, {}, {}, {}, {}, {}},
		podClass:    map[string]*podPlace{},
		peerNames:   map[peerKey][]string{},
		groupNames:  map[groupKey]string{},
		filled:      map[string][]string{},
		kept:        map[string]*keptSet{},
	}
	e.baseChains()
	e.identityBase()
	e.podCIDRs()
	e.sortTiers()
	for _, key := range sortedKeys(c.Policies) {
		e.keepFilledFor(key)
	}
	for _, key := range sortedKeys(c.PodsOn(node)) {
		e.reclassify(key)
	}
	e.settle()
	e.touched = nft.NewTouched()
	return e
}

// Node compiles the ruleset for the pods on one node from scratch. Only
// policies that apply to a pod on this node are compiled, so a node's
// ruleset grows with its own pods' policies, not with the cluster's.
func Node(c *model.Cluster, node string) *nft.Ruleset { return NewEngine(c, node).rs }

// NodeWith is Node for an agent run with opts.
func NodeWith(c *model.Cluster, node string, opts model.Options) *nft.Ruleset {
	return NewEngineWith(c, node, opts).rs
}

// Ruleset is the compiled ruleset. It is the engine's own: read it, do not
// change it, and do not keep it across a Set or Delete.
func (e *Engine) Ruleset() *nft.Ruleset { return e.rs }

// Cluster is the model the engine compiles; read it only.
func (e *Engine) Cluster() *model.Cluster { return e.c }

// TakeTouched returns what changed in the ruleset since the last call (or
// since NewEngine) and starts a new record.
func (e *Engine) TakeTouched() *nft.Touched {
	e.flushMoves()
	t := e.touched
	e.touched = nft.NewTouched()
	return t
}

// SelectedPods is the number of local pods some policy isolates.
func (e *Engine) SelectedPods() int { return len(e.local) }

// Set adds or replaces an object, as model.Cluster.Set does, and updates
// the ruleset.
func (e *Engine) Set(obj any) error {
	kind, ns, name, ok := model.RefOf(obj)
	if !ok {
		return fmt.Errorf("%T is not a kind the model knows", obj)
	}
	var addrs []netip.Addr
	if pod, ok := obj.(*v1.Pod); ok {
		addrs = model.PodFromAPI(pod).IPs
	}
	return e.change(kind, ns, name, addrs, func() error { return e.c.Set(obj) })
}

// Delete removes an object, as model.Cluster.Delete does, and updates the
// ruleset.
func (e *Engine) Delete(kind, namespace, name string) error {
	return e.change(kind, namespace, name, nil, func() error { return e.c.Delete(kind, namespace, name) })
}

// change applies one object's change to the model and re-evaluates what it
// can affect: memberships of dynamic sets are compared before and after;
// local pods are classified again; chains built from a changed policy are
// built again. A pod's change can also move the ownership of an address
// it lists, before or after (addrs), between the other pods that list it
// (model.Cluster.Owns): those are re-evaluated with it.
func (e *Engine) change(kind, ns, name string, addrs []netip.Addr, apply func() error) error {
	defer e.settle()
	switch kind {
	case "Pod":
		key := ns + "/" + name
		old := e.c.Pods[key]
		if old != nil {
			addrs = append(addrs, old.IPs...)
		}
		pods := append([]*model.Pod{old}, e.c.PodsListing(addrs, key)...)
		before := e.podMembers(pods, false)
		if err := apply(); err != nil {
			return err
		}
		pods[0] = e.c.Pods[key]
		e.swap(before, e.podMembers(pods, false))
		e.reclassify(key)
		for _, p := range pods[1:] {
			if p.Node == e.node {
				e.reclassify(p.Key())
			}
		}
	case "Namespace":
		pods := podList(e.c.PodsIn(name))
		before := e.podMembers(pods, true)
		if err := apply(); err != nil {
			return err
		}
		e.swap(before, e.podMembers(pods, true))
		for _, p := range pods {
			if p.Node == e.node {
				e.reclassify(p.Key())
			}
		}
	case "Node":
		before := e.nodeMembers(e.c.Nodes[name])
		if err := apply(); err != nil {
			return err
		}
		e.swap(before, e.nodeMembers(e.c.Nodes[name]))
		if name == e.node {
			e.podCIDRs()
		}
	case "NetworkPolicy":
		key := ns + "/" + name
		if p := e.c.Policies[key]; p != nil {
			forgetPeerNames(e, p.Rules, func(r *model.Rule) *model.Match { return &r.Match })
		}
		if err := apply(); err != nil {
			return err
		}
		// The new sets first: a set the policy keeps is never let go and
		// filled again.
		old := e.filled[key]
		e.keepFilledFor(key)
		e.letGo(old)
		for key, pod := range e.c.PodsOn(e.node) {
			if pod.Namespace == ns {
				e.reclassify(key)
				e.podDirty[key] = true // its groups may gain or lose rules
			}
		}
		for _, dir := range directions {
			e.rebuild(auditPolicyDef(key, dir).name())
		}
		// Its class chains (their own-node rule, their peer sets) and the
		// groups of its rules.
		e.rebuildWith(key)
	case model.KindANP, model.KindBANP, model.KindCNP:
		key := kind + "/" + name
		if p := e.c.TierPolicies[key]; p != nil {
			forgetPeerNames(e, p.Rules, func(r *model.TierRule) *model.Match { return &r.Match })
		}
		if err := apply(); err != nil {
			return err
		}
		e.sortTiers()
		for pod := range e.c.PodsOn(e.node) {
			e.reclassify(pod)
		}
		// The pods whose classes list the policy: their groups may gain
		// or lose its rules (a pod whose class changed is dirty already).
		for pod, pl := range e.podClass {
			if slices.ContainsFunc(pl.keys[:], func(keys []string) bool { return slices.Contains(keys, key) }) {
				e.podDirty[pod] = true
			}
		}
		e.rebuildWith(key)
	default:
		return apply()
	}
	return nil
}

var directions = []model.Direction{model.Ingress, model.Egress}

// rebuildWith builds again every live chain built from the policy key:
// class chains first, whose peer sets the groups' rules are matched by.
func (e *Engine) rebuildWith(key string) {
	var built, later []string
	for n, lc := range e.chains {
		switch {
		case !slices.Contains(lc.def.keys, key):
		case lc.def.kind == chainGroup || lc.def.kind == chainVerdict || lc.def.kind == chainTierVerdict:
			later = append(later, n)
		default:
			built = append(built, n)
		}
	}
	slices.Sort(built)
	slices.Sort(later)
	for _, n := range append(built, later...) {
		e.rebuild(n)
	}
}

func (e *Engine) sortTiers() {
	e.tiers = [2][]*model.TierPolicy{e.c.SortedTier(model.TierAdmin), e.c.SortedTier(model.TierBaseline)}
}

// reclassify puts a pod's map elements where its policies now send it:
// the new elements (and the chains they lead to) come first, then the old
// ones go, so a chain both use is never dropped and rebuilt.
func (e *Engine) reclassify(key string) {
	var now []entry
	var ips, dnsIPs []netip.Addr
	if pod := e.c.Pods[key]; pod != nil && pod.Node == e.node && pod.Active() {
		now = e.classify(pod)
		ips = pod.IPs
		if e.opts.DNSGroup != 0 && e.isDNSClient(pod) {
			dnsIPs = pod.IPs
		}
	}
	e.know(key, ips)
	e.dnsClient(key, dnsIPs)
	e.notePlace(key, now)
	was := e.local[key]
	if slices.EqualFunc(was, now, sameEntry) {
		return
	}
	for _, en := range now {
		e.ensure(en.target)
		e.addElem(en.set, en.elem)
	}
	for _, en := range was {
		e.delElem(en.set, en.elem)
	}
	for _, en := range was {
		e.release(en.target.name())
	}
	if len(now) == 0 {
		delete(e.local, key)
	} else {
		e.local[key] = now
	}
}

func sameEntry(a, b entry) bool { return a.set == b.set && a.elem == b.elem }

// ensure adds a reference to the chain def describes, building it (and
// what it refers to) when it is new.
func (e *Engine) ensure(def chainDef) {
	name := def.name()
	if lc, ok := e.chains[name]; ok {
		lc.refs++
		return
	}
	ch, reads, peers, targets := e.buildAll(def)
	lc := &liveChain{refs: 1, def: def, reads: reads, peers: peers, targets: targets}
	e.chains[name] = lc
	e.rs.AddChain(ch)
	e.touched.Chain(name)
	e.keepSets(lc, 1)
	for _, t := range targets {
		e.ensure(t)
	}
}

// buildAll builds a chain and says what it holds on to: the sets its rules
// read, its peer sets (a class chain's), and its targets.
func (e *Engine) buildAll(def chainDef) (ch *nft.Chain, reads, peers []string, targets []chainDef) {
	e.groupTargets, e.pinned = nil, nil
	ch = e.build(def)
	reads = nft.ChainSets(ch)
	for _, s := range e.pinned {
		if !slices.Contains(peers, s) {
			peers = append(peers, s)
		}
	}
	targets = def.targets()
	if def.kind == chainGroup {
		targets = e.groupTargets
	}
	e.groupTargets, e.pinned = nil, nil
	return ch, reads, peers, targets
}

// release drops a reference to a chain; the last one deletes it and
// releases what it referred to.
func (e *Engine) release(name string) {
	lc := e.chains[name]
	if lc.refs--; lc.refs > 0 {
		return
	}
	delete(e.chains, name)
	delete(e.rs.Chains, name)
	e.touched.Chain(name)
	e.keepSets(lc, -1)
	for _, t := range lc.targets {
		e.release(t.name())
	}
}

// rebuild builds a live chain again from the current model (its policy
// changed); a chain that comes out the same is left alone.
func (e *Engine) rebuild(name string) {
	lc, ok := e.chains[name]
	if !ok {
		return
	}
	old := e.rs.Chains[name]
	ch, reads, peers, targets := e.buildAll(lc.def)
	same := sameRuleIDs(old.Rules, ch.Rules)
	if same && slices.Equal(reads, lc.reads) && slices.Equal(peers, lc.peers) && slices.EqualFunc(targets, lc.targets, sameDef) {
		return
	}
	if !same {
		e.rs.AddChain(ch)
		e.touched.Chain(name)
	}
	was := *lc
	lc.reads, lc.peers, lc.targets = reads, peers, targets
	e.keepSets(lc, 1) // the new first: a set both keep stays
	for _, t := range targets {
		e.ensure(t)
	}
	e.keepSets(&was, -1)
	for _, t := range was.targets {
		e.release(t.name())
	}
}

func sameDef(a, b chainDef) bool { return a.name() == b.name() }

func sameRuleIDs(a, b []*nft.Rule) bool {
	return slices.EqualFunc(a, b, func(x, y *nft.Rule) bool { return x.ID() == y.ID() })
}

// newSet adds a set that a chain being built needs. A dynamic set (def not
// nil) is filled with the pods or nodes that are members now.
func (e *Engine) newSet(s *nft.Set, def *setDef) *nft.Set {
	if old, ok := e.sets[s.Name]; ok || e.dry {
		if ok {
			return old.set
		}
		return s
	}
	ls := &liveSet{name: s.Name, def: def, set: s}
	e.sets[s.Name] = ls
	if def == nil {
		return s
	}
	switch {
	case def.nodes != nil:
		e.nodeSets[s.Name] = ls
		for _, n := range e.c.Nodes {
			for _, el := range def.nodeElems(n) {
				e.addElem(s.Name, el)
			}
		}
	case def.namespaces != nil:
		for _, ns := range def.namespaces {
			addIndex(e.podSetsByNS, ns, s.Name, ls)
		}
		e.fill(ls, def.namespaces)
	case def.domains != nil:
		e.fillDomains(ls)
	case def.named != nil:
		e.namedSets[s.Name] = ls
		for _, pod := range e.c.PodsWithPort(def.named.Name) {
			for _, el := range def.podElems(e.c, pod) {
				e.addElem(s.Name, el)
			}
		}
	default:
		e.podSetsAny[s.Name] = ls
		e.fill(ls, def.candidateNamespaces(e.c))
	}
	return s
}

// fill adds the members among the pods of the given namespaces. Its
// counts are made at the size of the members, found first: a new peer
// selector's set at L takes ~4,000 of them, and growing the map to them
// rehashed it ten times.
func (e *Engine) fill(ls *liveSet, namespaces []string) {
	var elems []nft.Elem
	for _, ns := range namespaces {
		elems = ls.def.appendNamespaceElems(elems, e.c, ns)
	}
	m := e.countsOf(ls.name, len(elems))
	for _, el := range elems {
		e.count(ls.name, ls, m, el)
	}
}

// hasSet reports whether a set other than a dispatch map is live.
func (e *Engine) hasSet(name string) bool {
	_, ok := e.sets[name]
	return ok
}

// readSets counts rules that read sets in the kernel (by +1 or -1): the
// first puts a set in the ruleset, the last takes it out.
func (e *Engine) readSets(names []string, by int) {
	for _, name := range names {
		ls := e.sets[name]
		if ls == nil {
			continue // a dispatch map
		}
		ls.readers += by
		switch {
		case by > 0 && ls.readers == 1:
			if ls.def != nil {
				for el := range e.counts[name] {
					ls.set.Add(el)
				}
			}
			e.rs.AddSet(ls.set)
			e.touched.Set(name)
		case by < 0 && ls.readers == 0:
			if ls.def != nil {
				ls.set.Clear()
			}
			delete(e.rs.Sets, name)
			e.touched.Set(name)
		}
	}
}

func (e *Engine) releaseSet(name string) {
	ls := e.sets[name]
	if ls.refs--; ls.refs > 0 {
		return
	}
	if isAddrSet(ls) {
		for _, c := range e.counts[name] {
			e.untrackAddr(ls, c.addr)
		}
	}
	if _, ok := e.cidrs[name]; ok {
		delete(e.cidrs, name)
		e.cidrsChanged()
	}
	delete(e.sets, name)
	delete(e.rs.Sets, name)
	delete(e.counts, name)
	delete(e.podSetsAny, name)
	delete(e.namedSets, name)
	delete(e.nodeSets, name)
	delete(e.domainSets, name)
	if ls.def != nil {
		for _, ns := range ls.def.namespaces {
			removeIndex(e.podSetsByNS, ns, name)
		}
	}
	e.touched.Set(name)
}

// addElem counts one contribution of an element; the first adds it.
func (e *Engine) addElem(set string, el nft.Elem) {
	e.count(set, e.sets[set], e.countsOf(set, 0), el)
}

// elemCount is how many pods or nodes put an element in a set and, in an
// address set, the record of its address: a set's members are visited
// again when a space starts or stops using it or when it goes, and finding
// each record again in the map of every peer address (50,000 at L) took a
// quarter of the costliest event's profile (paired runs with the record
// kept: its delete 10% faster, its add within the noise).
type elemCount struct {
	n    int
	addr *peerAddr
}

// countsOf is a set's counted elements, made (sized for size) if it has
// none yet.
func (e *Engine) countsOf(set string, size int) map[nft.Elem]elemCount {
	m := e.counts[set]
	if m == nil {
		m = make(map[nft.Elem]elemCount, size)
		e.counts[set] = m
	}
	return m
}

// count is addElem with the set's record (nil for a dispatch map) and
// counts found.
func (e *Engine) count(set string, ls *liveSet, m map[nft.Elem]elemCount, el nft.Elem) {
	c := m[el]
	if c.n++; c.n == 1 {
		if holdsElements(ls) {
			e.setOf(ls, set).Add(el)
			e.touched.Elem(set, el)
		}
		if isAddrSet(ls) {
			c.addr = e.trackAddr(ls, el.Addr)
		}
	}
	m[el] = c
}

// delElem drops one contribution; the last removes the element.
func (e *Engine) delElem(set string, el nft.Elem) {
	m := e.counts[set]
	c := m[el]
	if c.n--; c.n > 0 {
		m[el] = c
		return
	}
	delete(m, el)
	ls := e.sets[set]
	if holdsElements(ls) {
		e.setOf(ls, set).Delete(el)
		e.touched.Elem(set, el)
	}
	if c.addr != nil {
		e.untrackAddr(ls, c.addr)
	}
}

// holdsElements reports whether a set's elements are kept in its set object: a
// dispatch map's (ls nil) always; a dynamic set's only while a rule reads
// it (its counts are its record; filling a new peer selector's set of
// ~4,000 pods at L, a second map of them was a tenth of the event); a
// static set's always (it is made whole).
func holdsElements(ls *liveSet) bool { return ls == nil || ls.readers > 0 || ls.def == nil }

// setOf is the set object of a live set (ls) or a dispatch map (name).
func (e *Engine) setOf(ls *liveSet, name string) *nft.Set {
	if ls != nil {
		return ls.set
	}
	return e.rs.Sets[name]
}

// member is one element a pod or node contributes to a dynamic set.
type member struct {
	set  string
	elem nft.Elem
}

// podMembers lists what pods contribute to the dynamic sets that can hold
// them (with nsOnly, only to those whose peers select namespaces by
// label: what a namespace's labels can change). Named-port sets are found
// by the pod's own port names.
func (e *Engine) podMembers(pods []*model.Pod, nsOnly bool) []member {
	var out []member
	add := func(ls *liveSet, pod *model.Pod) {
		for _, el := range ls.def.podElems(e.c, pod) {
			out = append(out, member{ls.name, el})
		}
	}
	for _, pod := range pods {
		if pod == nil || !pod.Active() {
			continue
		}
		for _, ls := range e.podSetsAny {
			add(ls, pod)
		}
		if nsOnly {
			continue
		}
		if len(pod.Ports) > 0 {
			for _, ls := range e.namedSets {
				add(ls, pod) // podElems matches the pod's ports by name
			}
		}
		for _, ls := range e.podSetsByNS[pod.Namespace] {
			add(ls, pod)
		}
	}
	return out
}

func (e *Engine) nodeMembers(n *model.Node) []member {
	var out []member
	if n == nil {
		return nil
	}
	for name, ls := range e.nodeSets {
		for _, el := range ls.def.nodeElems(n) {
			out = append(out, member{name, el})
		}
	}
	return out
}

// swap replaces the contributions before with those after: adds first, so
// an element both have is never removed and re-added.
func (e *Engine) swap(before, after []member) {
	for _, m := range after {
		e.addElem(m.set, m.elem)
	}
	for _, m := range before {
		e.delElem(m.set, m.elem)
	}
}

func podList(m map[string]*model.Pod) []*model.Pod {
	out := make([]*model.Pod, 0, len(m))
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func addIndex[V any](idx map[string]map[string]V, outer, inner string, v V) {
	m := idx[outer]
	if m == nil {
		m = map[string]V{}
		idx[outer] = m
	}
	m[inner] = v
}

func removeIndex[V any](idx map[string]map[string]V, outer, inner string) {
	delete(idx[outer], inner)
	if len(idx[outer]) == 0 {
		delete(idx, outer)
	}
}
