package nft

import (
	"fmt"
	"strings"
)

// OpKind is one kind of change in a transaction.
type OpKind int

const (
	OpAddTable OpKind = iota
	OpAddSet
	OpAddChain
	OpAddElements
	OpDeleteElements
	OpFlushChain
	OpAddRule
	OpDeleteChain
	OpDeleteSet
	OpDeleteTable
)

// Op is one change. Set ops carry the set's name and type (and comment for
// OpAddSet); element ops carry the elements; chain ops the chain's name and
// hook; OpAddRule the chain name and the rule.
type Op struct {
	Kind    OpKind
	Name    string // set or chain name
	SetType SetType
	Comment string
	Hook    *Hook
	Elems   []Elem
	Rule    *Rule
}

// Transaction is an ordered list of changes applied atomically, as one
// netlink batch. Its text form is a valid `nft -f` script.
type Transaction struct {
	Ops []Op
}

// Len is the number of operations.
func (t *Transaction) Len() int { return len(t.Ops) }

// Empty reports whether the transaction changes nothing.
func (t *Transaction) Empty() bool { return len(t.Ops) == 0 }

// Add appends an op.
func (t *Transaction) Add(op Op) { t.Ops = append(t.Ops, op) }

// String renders the transaction as an nft script.
func (t *Transaction) String() string {
	var b strings.Builder
	for _, op := range t.Ops {
		b.WriteString(op.String())
		b.WriteByte('\n')
	}
	return b.String()
}

const tbl = "inet " + TableName

func (op Op) String() string {
	switch op.Kind {
	case OpAddTable:
		return "add table " + tbl
	case OpDeleteTable:
		return "delete table " + tbl
	case OpAddSet:
		kw := "set"
		if op.SetType.IsMap() {
			kw = "map"
		}
		return fmt.Sprintf("add %s %s %s { %s;%s }", kw, tbl, op.Name, op.SetType.Decl(), commentClause(op.Comment))
	case OpDeleteSet:
		kw := "set"
		if op.SetType.IsMap() {
			kw = "map"
		}
		return fmt.Sprintf("delete %s %s %s", kw, tbl, op.Name)
	case OpAddChain:
		return fmt.Sprintf("add chain %s %s%s", tbl, op.Name, hookClause(op.Hook))
	case OpDeleteChain:
		return fmt.Sprintf("delete chain %s %s", tbl, op.Name)
	case OpFlushChain:
		return fmt.Sprintf("flush chain %s %s", tbl, op.Name)
	case OpAddRule:
		return fmt.Sprintf("add rule %s %s %s", tbl, op.Name, op.Rule.Text())
	case OpAddElements, OpDeleteElements:
		verb := "add"
		if op.Kind == OpDeleteElements {
			verb = "delete"
		}
		return fmt.Sprintf("%s element %s %s { %s }", verb, tbl, op.Name, elemList(op.SetType, op.Elems, op.Kind == OpDeleteElements))
	}
	return fmt.Sprintf("# unknown op %d", op.Kind)
}

func commentClause(c string) string {
	if c == "" {
		return ""
	}
	return fmt.Sprintf(" comment %q;", truncate(c, MaxCommentLen))
}

func hookClause(h *Hook) string {
	if h == nil {
		return ""
	}
	return fmt.Sprintf(" { type filter hook %s priority %s; policy accept; }", h.Hook, priorityText(h.Priority))
}

func priorityText(p int) string {
	switch {
	case p == 0:
		return "filter"
	case p > 0:
		return fmt.Sprintf("filter + %d", p)
	}
	return fmt.Sprintf("filter - %d", -p)
}

// elemList renders elements; a delete of a map element names only its key.
func elemList(t SetType, elems []Elem, keyOnly bool) string {
	parts := make([]string, len(elems))
	for i, e := range elems {
		if keyOnly {
			parts[i] = e.KeyText(t)
		} else {
			parts[i] = e.Text(t)
		}
	}
	return strings.Join(parts, ", ")
}

// Text renders the whole ruleset as one `table inet nftpolicy { ... }` block
// that `nft -f` loads into an empty kernel: sets and maps first, then base
// chains, then regular chains, each sorted, so the output is stable.
func (rs *Ruleset) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s {\n", tbl)
	for _, s := range rs.SortedSets() {
		kw := "set"
		if s.Type.IsMap() {
			kw = "map"
		}
		fmt.Fprintf(&b, "\t%s %s {\n", kw, s.Name)
		for _, line := range strings.Split(s.Type.Decl(), "; ") {
			fmt.Fprintf(&b, "\t\t%s\n", line)
		}
		if s.Comment != "" {
			fmt.Fprintf(&b, "\t\tcomment %q\n", truncate(s.Comment, MaxCommentLen))
		}
		if s.Len() > 0 {
			elems := s.Sorted()
			b.WriteString("\t\telements = {")
			for i, e := range elems {
				if i > 0 {
					b.WriteString(",")
				}
				b.WriteString("\n\t\t\t" + e.Text(s.Type))
			}
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n")
	}
	for _, c := range rs.SortedChains() {
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hook != nil {
			fmt.Fprintf(&b, "\t\ttype filter hook %s priority %s; policy accept;\n", c.Hook.Hook, priorityText(c.Hook.Priority))
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.Text())
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
