package lab

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nftpolicy/nftpolicy/internal/scenario"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestAddressesAsCompileGivesThem: the lab gives pods the addresses
// internal/manifest plans, which is what `nftpolicy compile` of the same
// file prints (cmd/nftpolicy checks the same list): the kernel's dispatch
// map on node-1 holds exactly the isolated pods' addresses, the one the
// file fixes among them.
func TestAddressesAsCompileGivesThem(t *testing.T) {
	testutil.NeedKernel(t)
	sc, err := scenario.Load("../manifest/testdata/addresses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res := Run(context.Background(), sc, Options{RulesetOf: "node-1"})
	check(t, res.Report)
	want := []string{"10.244.1.7", "10.244.1.102", "10.244.1.104"}
	if diff := cmp.Diff(want, mapKeys(res.Ruleset, "ingress-pods-v4")); diff != "" {
		t.Errorf("ingress-pods-v4 on node-1 (-want +got):\n%s\n%s", diff, res.Ruleset)
	}
}

// mapKeys returns the keys of the elements of map or set name in nft text
// (as nft list and compile print it), in the order printed.
func mapKeys(ruleset, name string) []string {
	_, rest, ok := strings.Cut(ruleset, "map "+name+" {")
	if !ok {
		if _, rest, ok = strings.Cut(ruleset, "set "+name+" {"); !ok {
			return nil
		}
	}
	body, _, _ := strings.Cut(rest, "\n\t}")
	_, elems, ok := strings.Cut(body, "elements = {")
	if !ok {
		return nil
	}
	elems, _, _ = strings.Cut(elems, "}")
	var keys []string
	for _, e := range strings.Split(elems, ",") {
		key, _, _ := strings.Cut(strings.TrimSpace(e), " : ")
		keys = append(keys, key)
	}
	return keys
}
