package explain

import (
	"fmt"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

func compileNode(c *model.Cluster, node string) *nft.Ruleset { return compile.Node(c, node) }

// PathHop is a base chain of a node that a flow's first packet crosses.
type PathHop struct {
	Node, Chain string
	// ToLocal: the packet is for the node itself (fib daddr type local).
	ToLocal bool
}

// Path lists the base chains a new flow crosses, in order: the forward
// chains of the sender's node and then of the receiver's (once when they
// share a node), or input-egress when a pod talks to its own node. It is
// the route the compiler's agreement test traces (compile's kernelAllows).
func (x *Explainer) Path(f model.Flow) []PathHop {
	srcNode, dstNode, toNode := "", "", false
	if p := x.ev.PodByAddr(f.Src); p != nil {
		srcNode = p.Node
	}
	if p := x.ev.PodByAddr(f.Dst); p != nil {
		dstNode = p.Node
	}
	if n := x.nodeOf(f.Dst.Unmap()); n != "" {
		dstNode, toNode = n, true
	}
	if toNode && srcNode == dstNode {
		if srcNode == "" {
			return nil
		}
		return []PathHop{{srcNode, compile.ChainInputEgress, true}}
	}
	var out []PathHop
	if srcNode != "" {
		out = append(out, PathHop{srcNode, compile.ChainForwardEgress, false}, PathHop{srcNode, compile.ChainForwardIngress, false})
	}
	if dstNode != "" && dstNode != srcNode && !toNode {
		out = append(out, PathHop{dstNode, compile.ChainForwardEgress, false}, PathHop{dstNode, compile.ChainForwardIngress, false})
	}
	return out
}

// traceHop runs the flow's first packet through one base chain.
func traceHop(rs *nft.Ruleset, h PathHop, f model.Flow) (Hop, error) {
	pkt := nft.Packet{Src: f.Src, Dst: f.Dst, Proto: f.Proto, Port: f.Port, CtState: "new", ToLocal: h.ToLocal}
	res, err := rs.Trace(h.Chain, pkt)
	if err != nil {
		return Hop{}, fmt.Errorf("%s %s: %v", h.Node, h.Chain, err)
	}
	hop := Hop{Node: h.Node, Chain: h.Chain, Verdict: "accept", Rules: []string{}}
	if res.Dropped {
		hop.Verdict = "drop"
	}
	for _, id := range res.Matched {
		hop.Rules = append(hop.Rules, stripHash(id))
	}
	if len(res.Logged) > 0 {
		origins := compile.NewOrigins(rs)
		for _, p := range res.Logged {
			if o := origins.ByPrefix[p]; o != nil {
				hop.Logged = append(hop.Logged, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", o.Verdict, o.Tier, o.Policy, o.Rule)))
			} else {
				hop.Logged = append(hop.Logged, p)
			}
		}
	}
	return hop, nil
}

// stripHash drops the " [xxxxxxxx]" hash a rule's comment ends in: people
// read the rest, and the hash is the same for the kernel's copy anyway.
func stripHash(id string) string {
	if i := strings.LastIndex(id, " ["); i >= 0 && strings.HasSuffix(id, "]") && len(id)-i == 11 {
		return id[:i]
	}
	return id
}

// NodeCheck compares one node's kernel with the model for one flow.
type NodeCheck struct {
	Node string `json:"node"`
	// Model and Kernel are the flow traced through the node's chains in
	// the ruleset compiled from the cluster and in the table the kernel
	// holds.
	Model  []Hop `json:"model"`
	Kernel []Hop `json:"kernel"`
	// Drift: the kernel decides this flow differently from the model.
	Drift bool `json:"drift"`
	// TableDiffers: the kernel's table is not what the model compiles for
	// the node (for this flow or any other); Changes is how many element
	// changes and other operations would make it so.
	TableDiffers   bool `json:"tableDiffers"`
	ElementChanges int  `json:"elementChanges"`
	OtherChanges   int  `json:"otherChanges"`
	// Notes: what the comparison could not judge (a rule nftpolicy did not
	// write, no table at all, the flow does not cross this node).
	Notes []string `json:"notes,omitempty"`
}

// CheckNode traces the flow through the chains it crosses on node, both in
// the ruleset the model compiles for it and in kernel (the table read back
// from the kernel with nft.Kernel.Dump; nil when there is none), and
// reports whether they agree.
//
// Rules read back from the kernel carry only their comment, which ends in
// a hash of the rule's text: a kernel rule is traced as the compiled rule
// with the same comment, the same rule by construction. Sets, maps and
// their elements are read in full, so a changed element is traced as the
// kernel holds it. A rule with a comment the model does not know cannot be
// traced: it is named in Notes and skipped.
func (x *Explainer) CheckNode(q Question, node string, kernel *nft.Ruleset) (*NodeCheck, error) {
	_, _, f, err := x.resolve(q)
	if err != nil {
		return nil, err
	}
	want := x.ruleset(node)
	nc := &NodeCheck{Node: node, Model: []Hop{}, Kernel: []Hop{}}
	if kernel == nil {
		nc.Notes = append(nc.Notes, "the kernel holds no nftpolicy table: nothing is enforced on this node")
		kernel = nft.NewRuleset()
	}
	tx := diff.Diff(kernel, want)
	for _, op := range tx.Ops {
		if len(op.Elems) > 0 {
			nc.ElementChanges += len(op.Elems)
		} else {
			nc.OtherChanges++
		}
	}
	nc.TableDiffers = !tx.Empty()
	got, unknown := hydrate(kernel, want)
	var hops []PathHop
	for _, h := range x.Path(f) {
		if h.Node == node {
			hops = append(hops, h)
		}
	}
	if len(hops) == 0 {
		nc.Notes = append(nc.Notes, fmt.Sprintf("the flow crosses no chain of node %s: run this on the node of %s or %s", node, q.From, q.To))
		return nc, nil
	}
	for _, h := range hops {
		for _, u := range unknown[h.Chain] {
			nc.Notes = append(nc.Notes, fmt.Sprintf("chain %s holds a rule nftpolicy did not write (%q): the trace skips it", h.Chain, u))
		}
	}
	mv, err := traceHops(want, hops, f, &nc.Model)
	if err != nil {
		return nil, fmt.Errorf("the model's ruleset: %w", err)
	}
	kv, err := traceHops(got, hops, f, &nc.Kernel)
	if err != nil {
		// The kernel's table lacks a chain or set a rule needs: that is
		// drift too, and the trace says where.
		nc.Notes = append(nc.Notes, "the kernel's table cannot be traced: "+err.Error())
		nc.Drift = true
		return nc, nil
	}
	nc.Drift = mv != kv || !sameHops(nc.Model, nc.Kernel)
	return nc, nil
}

// traceHops traces hops until one drops; it reports whether all accepted.
func traceHops(rs *nft.Ruleset, hops []PathHop, f model.Flow, out *[]Hop) (bool, error) {
	for _, h := range hops {
		hop, err := traceHop(rs, h, f)
		if err != nil {
			return false, err
		}
		*out = append(*out, hop)
		if hop.Verdict == "drop" {
			return false, nil
		}
	}
	return true, nil
}

func sameHops(a, b []Hop) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Chain != b[i].Chain || a[i].Verdict != b[i].Verdict || strings.Join(a[i].Rules, "\n") != strings.Join(b[i].Rules, "\n") {
			return false
		}
	}
	return true
}

// hydrate copies the kernel's table with each rule replaced by the compiled
// rule whose ID (comment and hash) it carries; rules with an unknown ID are
// left out and returned by chain.
func hydrate(kernel, want *nft.Ruleset) (*nft.Ruleset, map[string][]string) {
	byID := map[string]*nft.Rule{}
	for _, ch := range want.Chains {
		for _, r := range ch.Rules {
			byID[r.ID()] = r
		}
	}
	// Sets are shared, not copied: the trace only reads them.
	out := &nft.Ruleset{Sets: kernel.Sets, Chains: map[string]*nft.Chain{}}
	unknown := map[string][]string{}
	for name, ch := range kernel.Chains {
		c := &nft.Chain{Name: ch.Name, Hook: ch.Hook}
		for _, r := range ch.Rules {
			if w, ok := byID[r.ID()]; ok {
				c.Rules = append(c.Rules, w)
			} else {
				unknown[name] = append(unknown[name], r.ID())
			}
		}
		out.Chains[name] = c
	}
	return out, unknown
}
