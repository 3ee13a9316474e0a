package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// cacheEvictBytes is written, a byte per cache line, before a cold add:
// twice this machine's 32 MiB L3.
const cacheEvictBytes = 64 << 20

// evictCaches writes a byte per cache line of buf (cacheEvictBytes long),
// which leaves little else in the CPU's caches.
func evictCaches(buf []byte) {
	for i := 0; i < len(buf); i += 64 {
		buf[i]++
	}
}

// floorPlainSet is the set the floor's plain adds go to: referenced by no
// rule, so adding to it validates nothing.
const floorPlainSet = "floor-plain"

// kernelFloor measures what the kernel alone charges for the smallest
// transactions on the node's ruleset rs, in a namespace of its own: a batch
// that adds a goto (a rule, or a verdict-map element to a chain) makes
// nf_tables validate the whole table at commit, walking every element of
// every verdict map a base chain reaches (kernel 6.18, p50 over three
// runs: one goto element 127–199 µs at S, 1.4–1.6 ms at L, 3.0–4.3 ms at
// XL, ~50 ns per verdict-map element, against 23–53 µs for a plain
// element; docs/nftables-notes.md, "A jump or goto in a batch revalidates
// the whole table", and BenchmarkKernelRevalidation, which varies a
// synthetic table's size). An upstream nf-next series (May 2025) proposes
// validating per chain instead; this kernel does not have it.
//
// Each of rounds interleaves one-op transactions, each timed as one Apply:
// add a goto element to the biggest IPv4 verdict map, delete it, add an
// element to an unreferenced plain set, delete it (untimed), and the goto
// element's add once more after the CPU's caches were filled with other
// data (then deleted, untimed): an agent's event comes after its compute
// and the suite's GC, which leave the kernel's table out of the caches.
func kernelFloor(ctx context.Context, j *Janitor, rs *nft.Ruleset, size gen.Size, rounds int) (*KernelFloorResult, error) {
	res := &KernelFloorResult{}
	var biggest *nft.Set
	for _, s := range rs.Sets {
		if s.Type.IsMap() {
			res.VerdictElements += s.Len()
		}
		if s.Type == nft.MapIPv4Verdict && (biggest == nil || s.Len() > biggest.Len()) {
			biggest = s
		}
	}
	if biggest == nil || biggest.Len() == 0 {
		return nil, errors.New("kernel floor: the ruleset has no IPv4 verdict map with elements")
	}
	res.BiggestMap, res.BiggestMapElements = biggest.Name, biggest.Len()
	var target string // an existing chain: the goto must validate as the agent's do
	for e := range biggest.All() {
		target = e.Chain
		break
	}
	addr, err := addrNotIn(biggest)
	if err != nil {
		return nil, err
	}

	ns, err := j.NetNS("floor-" + size.Name)
	if err != nil {
		return nil, fmt.Errorf("kernel floor: %w", err)
	}
	kernel := nft.NewNetlink(ns.FD())
	defer kernel.Close()
	if err := kernel.Apply(ctx, diff.Diff(nil, rs)); err != nil {
		return nil, fmt.Errorf("kernel floor: load the ruleset: %w", err)
	}
	if err := kernel.Apply(ctx, &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddSet, Name: floorPlainSet, SetType: nft.SetIPv4}}}); err != nil {
		return nil, fmt.Errorf("kernel floor: add the plain set: %w", err)
	}

	elemTx := func(kind nft.OpKind, set string, typ nft.SetType, e nft.Elem) *nft.Transaction {
		return &nft.Transaction{Ops: []nft.Op{{Kind: kind, Name: set, SetType: typ, Elems: []nft.Elem{e}}}}
	}
	gotoElem, plainElem := nft.Elem{Addr: addr, Chain: target}, nft.Elem{Addr: addr}
	var gotoAdds, gotoDeletes, plainAdds, coldAdds []time.Duration
	round := []struct {
		tx    *nft.Transaction
		times *[]time.Duration // nil: untimed
		cold  bool             // evict the caches first
	}{
		{elemTx(nft.OpAddElements, biggest.Name, biggest.Type, gotoElem), &gotoAdds, false},
		{elemTx(nft.OpDeleteElements, biggest.Name, biggest.Type, gotoElem), &gotoDeletes, false},
		{elemTx(nft.OpAddElements, floorPlainSet, nft.SetIPv4, plainElem), &plainAdds, false},
		{elemTx(nft.OpDeleteElements, floorPlainSet, nft.SetIPv4, plainElem), nil, false},
		{elemTx(nft.OpAddElements, biggest.Name, biggest.Type, gotoElem), &coldAdds, true},
		{elemTx(nft.OpDeleteElements, biggest.Name, biggest.Type, gotoElem), nil, false},
	}
	evict := make([]byte, cacheEvictBytes)
	// The compile's garbage (hundreds of MB at L) is collected now, not
	// inside a timed Apply of tens of microseconds.
	runtime.GC()
	for range rounds {
		for _, step := range round {
			if step.cold {
				evictCaches(evict)
			}
			t := time.Now()
			if err := kernel.Apply(ctx, step.tx); err != nil {
				return nil, fmt.Errorf("kernel floor: %s: %w", step.tx.Ops[0], err)
			}
			if step.times != nil {
				*step.times = append(*step.times, time.Since(t))
			}
		}
	}
	res.GotoAdd, res.GotoDelete, res.PlainAdd, res.GotoAddCold = DistOf(gotoAdds), DistOf(gotoDeletes), DistOf(plainAdds), DistOf(coldAdds)
	// The namespace lives until the run ends; its table (at XL ~60,000
	// elements of kernel memory) need not.
	if err := kernel.Apply(ctx, deleteTableTx); err != nil {
		return nil, fmt.Errorf("kernel floor: delete the table: %w", err)
	}
	return res, nil
}

// addrNotIn picks an address of TEST-NET-1 (192.0.2.0/24, never a pod's)
// that the verdict map m has no element for: adding it must create an
// element, not collide with one.
func addrNotIn(m *nft.Set) (netip.Addr, error) {
	used := map[netip.Addr]bool{}
	for e := range m.All() {
		used[e.Addr] = true
	}
	for a := netip.MustParseAddr("192.0.2.1"); a.As4()[2] == 2; a = a.Next() {
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("kernel floor: every address of 192.0.2.0/24 is in %s", m.Name)
}
