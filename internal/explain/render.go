package explain

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText prints a report for people: the verdict on the first line,
// then each direction with the rule or policies that decided it, then the
// compiled rules the first packet meets.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "%s -> %s %s/%d: %s\n", endpointText(r.From), endpointText(r.To), r.Protocol, r.Port, verdictWord(r.Allowed))
	for _, s := range []Side{r.Egress, r.Ingress} {
		who := s.Pod
		switch {
		case who != "":
		case s.Direction == "egress":
			who = r.From.Address
		default:
			who = r.To.Address
		}
		fmt.Fprintf(w, "  %-7s of %s: %s\n", s.Direction, who, s.Reason)
		if s.Audit != nil {
			fmt.Fprintf(w, "    audit mode: with the audit policies enforced, %s\n", s.Audit.Reason)
		}
	}
	if len(r.Compiled) > 0 {
		fmt.Fprintln(w, "  compiled rulesets (the rules nft list shows, in the order the packet meets them):")
		writeHops(w, "    ", r.Compiled)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  PROBLEM: %s\n", p)
	}
	if nc := r.Node; nc != nil {
		fmt.Fprintf(w, "  node %s, the table in the kernel:\n", nc.Node)
		writeHops(w, "    ", nc.Kernel)
		switch {
		case nc.Drift:
			fmt.Fprintf(w, "  DRIFT: the kernel decides this flow differently from the model; the model's ruleset:\n")
			writeHops(w, "    ", nc.Model)
		case len(nc.Kernel) > 0:
			fmt.Fprintf(w, "  the kernel agrees with the model for this flow\n")
		}
		if nc.TableDiffers {
			fmt.Fprintf(w, "  the kernel's table differs from the model's: %d element changes and %d other operations would repair it\n", nc.ElementChanges, nc.OtherChanges)
		}
		for _, n := range nc.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
	}
}

func writeHops(w io.Writer, indent string, hops []Hop) {
	for _, h := range hops {
		rules := "no rule with a verdict matched"
		if len(h.Rules) > 0 {
			rules = strings.Join(h.Rules, " -> ")
		}
		fmt.Fprintf(w, "%s%s %s: %s: %s\n", indent, h.Node, h.Chain, h.Verdict, rules)
		for _, l := range h.Logged {
			fmt.Fprintf(w, "%s  logs: %s\n", indent, l)
		}
	}
}

func endpointText(e Endpoint) string {
	switch {
	case e.Pod != "" && e.Given == e.Pod:
		return fmt.Sprintf("%s (%s on %s)", e.Pod, e.Address, e.Node)
	case e.Pod != "":
		return fmt.Sprintf("%s (pod %s on %s)", e.Address, e.Pod, e.Node)
	case e.Node != "":
		return fmt.Sprintf("%s (node %s)", e.Address, e.Node)
	}
	return e.Address + " (outside the cluster)"
}

// WriteJSON prints the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText prints a preview for people: the changes, the totals, then
// each group with its counts and its flows.
func (p *PreviewResult) WriteText(w io.Writer) {
	for _, c := range p.Changes {
		fmt.Fprintf(w, "change: %s\n", c)
	}
	ports := "none"
	if len(p.Ports) > 0 {
		ports = strings.Join(p.Ports, ", ")
	}
	fmt.Fprintf(w, "ports checked: %s, each destination's declared container ports, and %s standing for every port nothing names\n", ports, strings.Join(p.OtherPorts, ", "))
	fmt.Fprintf(w, "%s change verdict: %d now allowed, %d now denied (%s judged)\n", plural(p.Flows, "flow"), p.NowAllowed, p.NowDenied, plural(p.Evaluated, "flow"))
	for _, g := range p.Groups {
		fmt.Fprintf(w, "\n%s -> %s: %s, %d now allowed, %d now denied\n", g.From, g.To, plural(g.Flows, "flow"), g.NowAllowed, g.NowDenied)
		for _, f := range g.Flips {
			fam := ""
			if f.Family != "IPv4" {
				fam = " " + f.Family
			}
			if f.AnyOtherPort {
				fam += " (any port nothing names)"
			}
			fmt.Fprintf(w, "  %s -> %s %s/%d%s: %s -> %s (%s)\n", f.From, f.To, f.Protocol, f.Port, fam, verdictWord(f.Before), verdictWord(f.After), f.Why)
		}
	}
}

// WriteJSON prints the preview as one indented JSON object.
func (p *PreviewResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
