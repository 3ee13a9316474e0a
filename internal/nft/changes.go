package nft

// RuleSets lists the sets and maps a rule uses: its set matches and the map
// of a vmap verdict.
func RuleSets(r *Rule) []string { return appendRuleSets(nil, r) }

// appendRuleSets appends the names RuleSets lists to out.
func appendRuleSets(out []string, r *Rule) []string {
	for _, m := range r.Matches {
		switch m := m.(type) {
		case MatchAddrInSet:
			out = append(out, m.Set)
		case MatchProtoPortInSet:
			out = append(out, m.Set)
		case MatchDaddrProtoPortInSet:
			out = append(out, m.Set)
		}
	}
	if r.Verdict.Kind == Vmap {
		out = append(out, r.Verdict.Map)
	}
	return out
}

// ChainSets lists the sets and maps a chain's rules use, once each.
func ChainSets(c *Chain) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range c.Rules {
		for _, s := range RuleSets(r) {
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// Touched names what changes may have altered in a ruleset since it was
// last applied, so that a partial diff looks at those objects only.
type Touched struct {
	// Sets are compared whole: created, deleted or rebuilt.
	Sets map[string]bool
	// Elems are the elements of a set that may have come or gone, in the
	// order they were touched, some maybe more than once (the diff drops
	// repeats): a list, because a new peer selector touches ~4,500
	// elements of one map at L, and a map of them, rehashed as it grew,
	// was a tenth of such an event's time.
	Elems map[string][]Elem
	// Moves are a set's exact changes since the last record, for a diff
	// against a table that holds what the set held then: no lookup per
	// element. The compile engine knows them for its ids maps, where the
	// event that brings a peer selector new to a node moves thousands of
	// addresses (5,357 at L), and looking each up in both rulesets was a
	// third of that event's compute.
	Moves map[string]*ElemMoves
	// Chains are compared rule by rule: created, deleted or rewritten.
	Chains map[string]bool
}

// ElemMoves are the elements to delete from a set and to add to it, each
// once.
type ElemMoves struct{ Del, Add []Elem }

// NewTouched makes an empty record.
func NewTouched() *Touched {
	return &Touched{Sets: map[string]bool{}, Elems: map[string][]Elem{}, Moves: map[string]*ElemMoves{}, Chains: map[string]bool{}}
}

// Set records that set changed as a whole.
func (t *Touched) Set(name string) {
	t.Sets[name] = true
	delete(t.Elems, name)
	delete(t.Moves, name)
}

// Moved records a set's exact changes (Moves). The record keeps the lists
// of its first call for a set; don't change them after.
func (t *Touched) Moved(set string, del, add []Elem) {
	if len(del)+len(add) == 0 || t.Sets[set] {
		return
	}
	if m := t.Moves[set]; m != nil {
		m.Del, m.Add = append(m.Del, del...), append(m.Add, add...)
		return
	}
	t.Moves[set] = &ElemMoves{Del: del, Add: add}
}

// Elem records that elements of a set may have changed.
func (t *Touched) Elem(set string, es ...Elem) {
	if len(es) == 0 || t.Sets[set] {
		return
	}
	t.Elems[set] = append(t.Elems[set], es...)
}

// Chain records that a chain changed.
func (t *Touched) Chain(name string) { t.Chains[name] = true }

// Empty reports whether nothing was touched.
func (t *Touched) Empty() bool {
	return len(t.Sets) == 0 && len(t.Elems) == 0 && len(t.Moves) == 0 && len(t.Chains) == 0
}

// ApplyOps changes rs as the kernel does when it commits tx, without the
// kernel's checks (the Fake makes those): it keeps the shadow of what the
// kernel holds up to date in time proportional to the transaction.
func (rs *Ruleset) ApplyOps(tx *Transaction) {
	for _, op := range tx.Ops {
		switch op.Kind {
		case OpAddTable:
		case OpDeleteTable:
			rs.Sets, rs.Chains = map[string]*Set{}, map[string]*Chain{}
		case OpAddSet:
			if _, ok := rs.Sets[op.Name]; !ok {
				rs.Sets[op.Name] = NewSet(op.Name, op.SetType, op.Comment)
			}
		case OpDeleteSet:
			delete(rs.Sets, op.Name)
		case OpAddElements:
			rs.Sets[op.Name].Add(op.Elems...)
		case OpDeleteElements:
			for _, e := range op.Elems {
				rs.Sets[op.Name].Delete(e)
			}
		case OpAddChain:
			if _, ok := rs.Chains[op.Name]; !ok {
				rs.Chains[op.Name] = &Chain{Name: op.Name, Hook: op.Hook}
			}
		case OpFlushChain:
			c := rs.Chains[op.Name]
			rs.Chains[op.Name] = &Chain{Name: c.Name, Hook: c.Hook}
		case OpAddRule:
			c := rs.Chains[op.Name]
			rs.Chains[op.Name] = &Chain{Name: c.Name, Hook: c.Hook, Rules: append(c.Rules[:len(c.Rules):len(c.Rules)], op.Rule)}
		case OpDeleteChain:
			delete(rs.Chains, op.Name)
		}
	}
}
