package bench

import (
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// TestBytesKindOfCompiledNames: every element op of the S cluster's full
// programming is put where its map's name says, with the names compile
// gives its maps (not copies of them), and an identity's map, which only
// the compiled ruleset names, is a pod-in-identity map.
func TestBytesKindOfCompiledNames(t *testing.T) {
	for name, want := range map[string]string{
		compile.IDsMap(model.Ingress, nft.IPv4):      bytesPeerIDs,
		compile.IDsMap(model.Egress, nft.IPv6):       bytesPeerIDs,
		compile.DispatchMap(model.Ingress, nft.IPv4): bytesDispatch,
		compile.RestMap(model.Egress, nft.IPv4):      bytesDispatch,
		compile.AfterMap(model.Ingress, nft.IPv6):    bytesDispatch,
		compile.LocalPodSet(nft.IPv4):                bytesOther,
	} {
		if got := bytesKindOf(nft.Op{Kind: nft.OpAddElements, Name: name}); got != want {
			t.Errorf("elements of %s: %q, want %q", name, got, want)
		}
	}
	c := gen.Generate(gen.S, 1)
	m, err := c.Model()
	if err != nil {
		t.Fatal(err)
	}
	tx := diff.Diff(nil, compile.Node(m, gen.NodeName(0)))
	by, err := bytesBy(tx)
	if err != nil {
		t.Fatal(err)
	}
	total, _ := nft.OpBytes(tx)
	sum, parts := 0.0, 0.0
	for _, n := range total {
		sum += float64(n)
	}
	for _, k := range bytesKinds {
		if by[k] == 0 {
			t.Errorf("the S node's programming sends no bytes for %s", k)
		}
		parts += by[k]
	}
	if parts != sum {
		t.Errorf("the parts add up to %.0f bytes, the transaction has %.0f", parts, sum)
	}
	for _, op := range tx.Ops {
		if strings.Contains(op.Name, "-idmap-") && bytesKindOf(op) != bytesSets && bytesKindOf(op) != bytesGroups {
			t.Errorf("%v of %s: %q", op.Kind, op.Name, bytesKindOf(op))
		}
	}
}

// TestBytesWhy: the relabel target's reason lists the parts by how much
// more L sends than S, leaving out the parts neither sends.
func TestBytesWhy(t *testing.T) {
	l := map[string]Dist{bytesChains: {P50: 3600}, bytesPeerIDs: {P50: 2100}, bytesGroups: {P50: 1400}, bytesDispatch: {P50: 256}}
	s := map[string]Dist{bytesChains: {P50: 0}, bytesPeerIDs: {P50: 300}, bytesGroups: {P50: 1000}, bytesDispatch: {P50: 256}}
	want := "the p50 of each part at L vs S (they do not add up to the whole's): chains and rules 3600 vs 0 B, " +
		"peer identities 2100 vs 300 B, pods in identities 1400 vs 1000 B, dispatch 256 vs 256 B"
	if got := bytesWhy(l, s); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}
