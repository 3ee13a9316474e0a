package bench

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/inet"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// Baseline (d): the same policies as kube-router programs them: an ipset per
// policy's targets and per rule's peers (hash:ip; ipBlocks as hash:net with
// excepts as nomatch), a chain per policy whose rules MARK what a rule allows
// and RETURN, a chain per local pod jumping to its policies and dropping
// what is unmarked, and a jump per pod address from FORWARD. kube-router
// restores all of it on every change: every set rebuilt and swapped in
// (ipset restore), the whole filter table replaced (iptables-restore).
// This is a faithful shape, not kube-router's code: counts of chains, rules
// and set entries follow its layout, names follow its hashing scheme.

const krMark = "0x10000/0x10000"

type krScripts struct {
	ipset, iptables              string
	sets, entries, chains, rules int
}

type krSet struct {
	name, typ string
	entries   []string
}

type krBuilder struct {
	c      *model.Cluster
	sets   []*krSet
	chains []string
	rules  []string
}

func krHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

func (b *krBuilder) set(name, typ string, entries []string) string {
	sort.Strings(entries)
	b.sets = append(b.sets, &krSet{name: name, typ: typ, entries: entries})
	return name
}

func (b *krBuilder) chain(name string) string {
	b.chains = append(b.chains, name)
	return name
}

func (b *krBuilder) rule(chain string, args ...string) {
	b.rules = append(b.rules, "-A "+chain+" "+strings.Join(args, " "))
}

// kubeRouterScripts builds the ipset and iptables-restore input for node.
func kubeRouterScripts(c *model.Cluster, node string) *krScripts {
	b := &krBuilder{c: c}
	pods := c.SortedPods()
	var local []*model.Pod
	for _, p := range pods {
		if p.Node == node && p.Active() {
			local = append(local, p)
		}
	}
	fwd := b.chain("KUBE-ROUTER-FORWARD")
	b.rule("FORWARD", `-m comment --comment "kube-router netpol"`, "-j", fwd)
	b.rule(fwd, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
	policyChain := map[*model.Policy]string{}
	for _, p := range c.SortedPolicies() {
		for _, pod := range local {
			if p.Selects(c, pod) {
				policyChain[p] = b.policy(p, pods)
				break
			}
		}
	}
	for _, pod := range local {
		b.podChain(pod, fwd, policyChain)
	}

	var ipset strings.Builder
	entries := 0
	for _, s := range b.sets {
		tmp := "TMP-" + strings.TrimPrefix(strings.TrimPrefix(s.name, "KUBE-SRC-"), "KUBE-DST-")
		decl := s.typ + " family inet hashsize 1024 maxelem 65536"
		fmt.Fprintf(&ipset, "create %s %s -exist\ncreate %s %s -exist\nflush %s\n", s.name, decl, tmp, decl, tmp)
		for _, e := range s.entries {
			fmt.Fprintf(&ipset, "add %s %s\n", tmp, e)
		}
		fmt.Fprintf(&ipset, "swap %s %s\nflush %s\ndestroy %s\n", tmp, s.name, tmp, tmp)
		entries += len(s.entries)
	}
	var ipt strings.Builder
	ipt.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for _, ch := range b.chains {
		fmt.Fprintf(&ipt, ":%s - [0:0]\n", ch)
	}
	for _, r := range b.rules {
		ipt.WriteString(r + "\n")
	}
	ipt.WriteString("COMMIT\n")
	return &krScripts{ipset: ipset.String(), iptables: ipt.String(),
		sets: len(b.sets), entries: entries, chains: len(b.chains) + 3, rules: len(b.rules)}
}

// policy builds a policy's chain and sets and returns the chain's name.
func (b *krBuilder) policy(p *model.Policy, pods []*model.Pod) string {
	key := p.Key()
	ch := b.chain("KUBE-NWPLCY-" + krHash(key))
	var targets []*model.Pod
	for _, pod := range pods {
		if p.Selects(b.c, pod) {
			targets = append(targets, pod)
		}
	}
	tset := b.set("KUBE-DST-"+krHash(key+"/targets"), "hash:ip", addrsOf(targets))
	for _, dir := range []model.Direction{model.Ingress, model.Egress} {
		if !p.Isolates[dir] {
			continue
		}
		// Ingress: peers are sources, targets destinations; egress the reverse.
		tdir, pdir := "dst", "src"
		if dir == model.Egress {
			tdir, pdir = "src", "dst"
		}
		for _, r := range p.Rules[dir] {
			id := fmt.Sprintf("%s/%s/%d", key, dir, r.Index)
			peers := []string{""}
			var dests []*model.Pod // where named ports resolve
			if dir == model.Ingress {
				dests = targets
			}
			if !r.AllPeers {
				peers = nil
				var ips []*model.Pod
				var nets []string
				for _, peer := range r.Peers {
					switch {
					case peer.Invalid:
					case peer.Pods:
						for _, pod := range pods {
							if peer.MatchesPod(b.c, pod) {
								ips = append(ips, pod)
							}
						}
					case peer.CIDR.Addr().Is4():
						nets = append(nets, ipsetNets(peer)...)
					}
				}
				if len(ips) > 0 {
					s := b.set("KUBE-SRC-"+krHash(id+"/pods"), "hash:ip", dedupe(addrsOf(ips)))
					peers = append(peers, fmt.Sprintf("-m set --match-set %s %s", s, pdir))
					if dir == model.Egress {
						dests = ips
					}
				}
				if len(nets) > 0 {
					s := b.set("KUBE-SRC-"+krHash(id+"/blocks"), "hash:net", dedupe(nets))
					peers = append(peers, fmt.Sprintf("-m set --match-set %s %s", s, pdir))
				}
			}
			for _, peer := range peers {
				for _, port := range b.portMatches(r, id, dests) {
					match := strings.Join(nonEmpty(fmt.Sprintf("-m set --match-set %s %s", tset, tdir), peer, port), " ")
					comment := fmt.Sprintf(`-m comment --comment "rule to ACCEPT traffic of %s"`, id)
					b.rule(ch, comment, match, "-j MARK --set-xmark", krMark)
					b.rule(ch, comment, match, "-m mark --mark", krMark, "-j RETURN")
				}
			}
		}
	}
	return ch
}

// portMatches are a rule's port matches: numeric ports and ranges as
// --dport, named ports resolved on the destination pods into a set per
// number, as kube-router does.
func (b *krBuilder) portMatches(r model.Rule, id string, dests []*model.Pod) []string {
	if r.AllPorts {
		return []string{""}
	}
	var out []string
	for _, port := range r.Ports {
		proto := inet.ProtoName(port.Proto)
		switch {
		case port.Name != "":
			byNum := map[uint16][]*model.Pod{}
			for _, pod := range dests {
				if n, ok := pod.PortNumber(port.Name, port.Proto); ok {
					byNum[n] = append(byNum[n], pod)
				}
			}
			nums := make([]int, 0, len(byNum))
			for n := range byNum {
				nums = append(nums, int(n))
			}
			sort.Ints(nums)
			for _, n := range nums {
				s := b.set("KUBE-DST-"+krHash(fmt.Sprintf("%s/%s/%d", id, port.Name, n)), "hash:ip", addrsOf(byNum[uint16(n)]))
				out = append(out, fmt.Sprintf("-m set --match-set %s dst -p %s --dport %d", s, proto, n))
			}
		case port.Port == 0:
			out = append(out, "-p "+proto)
		case port.EndPort != port.Port:
			out = append(out, fmt.Sprintf("-p %s --dport %d:%d", proto, port.Port, port.EndPort))
		default:
			out = append(out, fmt.Sprintf("-p %s --dport %d", proto, port.Port))
		}
	}
	return out
}

func (b *krBuilder) podChain(pod *model.Pod, fwd string, policyChain map[*model.Policy]string) {
	var in, out []string
	for _, p := range b.c.SortedPolicies() {
		if ch, ok := policyChain[p]; ok && p.Selects(b.c, pod) {
			if p.Isolates[model.Ingress] {
				in = append(in, ch)
			}
			if p.Isolates[model.Egress] {
				out = append(out, ch)
			}
		}
	}
	if len(in) == 0 && len(out) == 0 {
		return
	}
	ch := b.chain("KUBE-POD-FW-" + krHash(pod.Key()))
	b.rule(ch, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
	for _, ip := range pod.IPs {
		if !ip.Is4() {
			continue
		}
		for _, p := range in {
			b.rule(ch, "-d", ip.String(), "-j", p)
		}
		for _, p := range out {
			b.rule(ch, "-s", ip.String(), "-j", p)
		}
		if len(in) > 0 {
			b.rule(fwd, "-d", ip.String(), "-j", ch)
		}
		if len(out) > 0 {
			b.rule(fwd, "-s", ip.String(), "-j", ch)
		}
	}
	b.rule(ch, "-m mark ! --mark", krMark, "-j DROP")
	b.rule(ch, "-j MARK --set-mark 0/0x10000")
}

// ipsetNets is an ipBlock as hash:net entries: hash:net takes no /0, so
// 0.0.0.0/0 becomes its two halves (as kube-router does); excepts are
// nomatch entries.
func ipsetNets(p model.Peer) []string {
	var out []string
	if p.CIDR.Bits() == 0 {
		out = append(out, "0.0.0.0/1", "128.0.0.0/1")
	} else {
		out = append(out, p.CIDR.String())
	}
	for _, e := range p.Except {
		if e.Addr().Is4() && e.Bits() > 0 {
			out = append(out, e.String()+" nomatch")
		}
	}
	return out
}

func addrsOf(pods []*model.Pod) []string {
	var out []string
	for _, p := range pods {
		for _, ip := range p.IPs {
			if ip.Is4() {
				out = append(out, ip.String())
			}
		}
	}
	return out
}

func dedupe(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// iptablesBackends are the iptables-restore flavours Debian ships.
var iptablesBackends = []struct{ name, restore string }{
	{"legacy", "iptables-legacy-restore"},
	{"nft", "iptables-nft-restore"},
}

const emptyFilter = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"

// kubeRouter measures baseline (d) at one size, each backend in its own
// throwaway namespace. Where iptables or ipset is missing it says so.
func kubeRouter(j *Janitor, mc *model.Cluster, size gen.Size, reps int) *IptablesResult {
	res := &IptablesResult{}
	if _, err := exec.LookPath("ipset"); err != nil {
		res.Note = "ipset is not installed: baseline (d) skipped (make perf installs iptables and ipset)"
		return res
	}
	sc := kubeRouterScripts(mc, gen.NodeUnderTest)
	res.Sets, res.Entries, res.Chains, res.Rules = sc.sets, sc.entries, sc.chains, sc.rules
	for _, be := range iptablesBackends {
		if _, err := exec.LookPath(be.restore); err != nil {
			continue
		}
		res.Available = true
		out := IptablesBackend{Name: be.name}
		if err := kubeRouterBackend(j, sc, size, be.name, be.restore, reps, &out); err != nil {
			out.Error = err.Error()
		}
		res.Backends = append(res.Backends, out)
	}
	if !res.Available {
		res.Note = "iptables is not installed: baseline (d) skipped (make perf installs iptables and ipset)"
	}
	return res
}

func kubeRouterBackend(j *Janitor, sc *krScripts, size gen.Size, name, restore string, reps int, out *IptablesBackend) error {
	ns, err := j.NetNS("ipt-" + name + "-" + size.Name)
	if err != nil {
		return err
	}
	sync := func() (time.Duration, error) {
		d1, err := timedExec(ns, sc.ipset, "ipset", "restore")
		if err != nil {
			return 0, err
		}
		d2, err := timedExec(ns, sc.iptables, restore)
		return d1 + d2, err
	}
	var full, resync []time.Duration
	for range reps {
		d, err := sync()
		if err != nil {
			return err
		}
		full = append(full, d)
		if _, err := timedExec(ns, emptyFilter, restore); err != nil {
			return err
		}
		if _, err := timedExec(ns, "", "ipset", "destroy"); err != nil {
			return err
		}
	}
	if _, err := sync(); err != nil {
		return err
	}
	for range reps {
		d, err := sync()
		if err != nil {
			return err
		}
		resync = append(resync, d)
	}
	out.Full, out.Resync = DistOf(full), DistOf(resync)
	return nil
}
