package bench

import (
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// What a transaction's bytes go to, for the breakdown of a pod relabel's
// (the target on bytes per relabel, L ÷ S, names the parts that grow).
const (
	bytesChains   = "chains and rules"   // chains added, flushed, deleted; rules
	bytesSets     = "sets and maps"      // sets and maps added or deleted
	bytesPeerIDs  = "peer identities"    // ids maps: peer addresses moving to another identity
	bytesGroups   = "pods in identities" // identities' maps: a local pod → its group
	bytesDispatch = "dispatch"           // a local pod → its class (the pods, rest and after-audit maps)
	bytesOther    = "other elements"     // port maps, named ports, peer sets read by rules, known pods
)

// bytesKinds lists them in the order the report gives them.
var bytesKinds = []string{bytesChains, bytesSets, bytesPeerIDs, bytesGroups, bytesDispatch, bytesOther}

// bytesKindOf names what op's bytes go to. Map names are compile's:
// <space>-ids-v4 and <space>-cidr-ids-v4, <space>-idmap-v4-<hash>,
// <dir>-pods-v4, <dir>-rest-v4, <dir>-after-audit-v4.
func bytesKindOf(op nft.Op) string {
	switch op.Kind {
	case nft.OpAddElements, nft.OpDeleteElements:
	case nft.OpAddSet, nft.OpDeleteSet:
		return bytesSets
	default:
		return bytesChains
	}
	name := op.Name
	switch {
	case strings.Contains(name, "-ids-v"):
		return bytesPeerIDs
	case strings.Contains(name, "-idmap-v"):
		return bytesGroups
	case strings.HasPrefix(name, "ingress-pods-v"), strings.HasPrefix(name, "egress-pods-v"),
		strings.Contains(name, "-rest-v"), strings.Contains(name, "-after-audit-v"):
		return bytesDispatch
	}
	return bytesOther
}

// bytesBy adds up tx's bytes on the socket by what they go to.
func bytesBy(tx *nft.Transaction) (map[string]float64, error) {
	sizes, err := nft.OpBytes(tx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for i, op := range tx.Ops {
		out[bytesKindOf(op)] += float64(sizes[i])
	}
	return out, nil
}
