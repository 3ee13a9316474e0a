package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// identityOf is what the comment of an identity chain's first rule names.
func identityOf(ruleset, chain string) string {
	_, body, ok := strings.Cut(ruleset, "chain "+chain+" {")
	if !ok {
		return "missing chain " + chain
	}
	_, comment, _ := strings.Cut(body, `comment "identity `)
	desc, _, _ := strings.Cut(comment, " [")
	return desc
}

// compileOK runs nftpolicy compile and returns its ruleset and warnings.
func compileOK(t *testing.T, args ...string) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := compileCmd(args, &out, &errOut); code != 0 {
		t.Fatalf("compile %v: exit %d: %s", args, code, errOut.String())
	}
	return out.String(), errOut.String()
}

var (
	nameHash = regexp.MustCompile(`-[0-9a-f]{8}-`)
	// An identity chain's name is only a hash; its lookup's comment says
	// which sets the identity is made of.
	identityChain = regexp.MustCompile(`goto ([a-z]+-id-[0-9a-f]{16})$`)
)

// elements returns the elements of the maps and sets whose names start
// with prefix and end with suffix, in the order printed, with the hashes
// of object names left out (-HASH-) and identity chains named by what
// their comment says (goto identity(…)), so that the assertions are about
// addresses and verdicts.
func elements(ruleset, prefix, suffix string) []string {
	var out []string
	for _, block := range strings.Split(ruleset, "\n\t}") {
		head, body, _ := strings.Cut(strings.TrimSpace(block), "{")
		fields := strings.Fields(head)
		if len(fields) != 2 || (fields[0] != "map" && fields[0] != "set") ||
			!strings.HasPrefix(fields[1], prefix) || !strings.HasSuffix(fields[1], suffix) {
			continue
		}
		_, elems, ok := strings.Cut(body, "elements = {")
		if !ok {
			continue
		}
		elems, _, _ = strings.Cut(elems, "}")
		for _, e := range strings.Split(elems, ",") {
			e = strings.TrimSpace(e)
			if m := identityChain.FindStringSubmatch(e); m != nil {
				e = strings.TrimSuffix(e, m[1]) + "identity(" + identityOf(ruleset, m[1]) + ")"
			}
			out = append(out, nameHash.ReplaceAllString(e, "-HASH-"))
		}
	}
	return out
}

// TestCompileKubectlList: what `kubectl get ... -o yaml` prints, one List
// with items of mixed kinds (a Service among them, which the agent does not
// enforce), compiles like the same objects as separate documents.
func TestCompileKubectlList(t *testing.T) {
	ruleset, warnings := compileOK(t, "-f", "testdata/kubectl-list.yaml", "--node", "node-1")
	if want := "warning: testdata/kubectl-list.yaml: Service web: not enforced by this version; skipped\n"; warnings != want {
		t.Errorf("warnings:\n got %q\nwant %q", warnings, want)
	}
	tests := []struct {
		prefix, suffix string
		want           []string
	}{
		{"ingress-pods-v4", "", []string{"10.0.1.5 : goto ingress-admin-HASH-AdminNetworkPolicy/deny-sensitive"}},
		{"ingress-rest-v4", "", []string{"10.0.1.5 : goto ingress-class-HASH-shop/web-from-client"}},
		{"ingress-ids-v4", "", []string{"10.0.2.7 : goto identity(peers-v4-HASH-pods_app_client_in_shop)"}},
		{"named-local-v4-", "tcp/http", []string{"10.0.1.5 . tcp . 8080"}},
		{"egress-pods-v4", "", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, elements(ruleset, tt.prefix, tt.suffix)); diff != "" {
			t.Errorf("%s…%s (-want +got):\n%s", tt.prefix, tt.suffix, diff)
		}
	}
}

// TestCompileScenarioGivesPodsAddresses: a scenario file's pods get the
// lab's addresses (internal/lab's TestAddressesAsCompileGivesThem finds the
// same ones in a real kernel), the one the file fixes is kept, and --step
// picks the state.
func TestCompileScenarioGivesPodsAddresses(t *testing.T) {
	const file = "../../internal/manifest/testdata/addresses.yaml"
	tests := []struct {
		name, node, step string
		dispatch, peers  []string
	}{
		{"last step, node-1", "node-1", "0",
			[]string{"10.244.1.7 : goto ingress-class-HASH-x/a-from-c", "10.244.1.102 : goto ingress-class-HASH-x/a-from-c", "10.244.1.104 : goto ingress-class-HASH-x/a-from-c"},
			[]string{"10.244.2.102 : goto identity(peers-v4-HASH-pods_app_c_in_x)"}},
		{"step 1, node-1", "node-1", "1",
			[]string{"10.244.1.7 : goto ingress-class-HASH-x/a-from-c", "10.244.1.102 : goto ingress-class-HASH-x/a-from-c"},
			[]string{"10.244.2.102 : goto identity(peers-v4-HASH-pods_app_c_in_x)"}},
		// node-2's only pod is c, which no policy isolates: no dispatch,
		// and no peer identity to judge with.
		{"last step, node-2", "node-2", "0", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ruleset, warnings := compileOK(t, "-f", file, "--node", tt.node, "--step", tt.step)
			if warnings != "" {
				t.Errorf("warnings: %q", warnings)
			}
			if diff := cmp.Diff(tt.dispatch, elements(ruleset, "ingress-pods-v4", "")); diff != "" {
				t.Errorf("ingress-pods-v4 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.peers, elements(ruleset, "ingress-ids-v4", "")); diff != "" {
				t.Errorf("peer identities (-want +got):\n%s", diff)
			}
		})
	}
}
