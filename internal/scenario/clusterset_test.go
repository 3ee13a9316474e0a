package scenario

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClusterSetErrors: files with clusters that must not load, with the
// error each gives (testdata/bad-clusters).
func TestClusterSetErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"cluster-step-without-clusters.yaml", []string{
			`cluster-step-without-clusters.yaml:5: step 1: unknown key "disconnect" in a step`,
			"cluster-step-without-clusters.yaml:5: step 1: a step needs apply, delete, dns, wait or probe",
		}},
		{"duplicate-cluster.yaml", []string{`duplicate-cluster.yaml:4: cluster "one" declared twice`}},
		{"literal-without-cluster.yaml", []string{"literal-without-cluster.yaml:14: step 1: to x/a: no such endpoint at this step"}},
		{"missing-in-cluster.yaml", []string{`missing-in-cluster.yaml:8: Pod x/a: namespace "x" does not exist`}},
		{"reconnect-connected.yaml", []string{`reconnect-connected.yaml:7: step 2: reconnect: cluster "one" is not disconnected`}},
		{"top-nodes.yaml", []string{"top-nodes.yaml:2: nodes: with clusters, each cluster lists its own"}},
		{"unknown-cluster.yaml", []string{`unknown-cluster.yaml:7: step 1: cluster: no cluster "two"`}},
	}
	files, _ := filepath.Glob("testdata/bad-clusters/*.yaml")
	if len(files) != len(tests) {
		t.Errorf("%d files in testdata/bad-clusters, %d tests", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/bad-clusters", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			parseFails(t, tt.file, data, tt.want)
		})
	}
}

// TestClusterPatterns: CLUSTER: prefixes parse, print back, and match.
func TestClusterPatterns(t *testing.T) {
	two := Endpoint{Cluster: "two", Kind: KindPod, Namespace: "x", Name: "a"}
	for _, tt := range []struct {
		pattern string
		matches bool
	}{
		{"two:x/a", true}, {"one:x/a", false}, {"*:x/*", true}, {"x/a", true}, {"*/*", true}, {"two:node/a", false},
	} {
		p, err := ParsePattern(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		if p.String() != tt.pattern {
			t.Errorf("%s prints as %s", tt.pattern, p)
		}
		if got := p.Matches(two); got != tt.matches {
			t.Errorf("%s matches two:x/a: %v, want %v", tt.pattern, got, tt.matches)
		}
	}
	for _, bad := range []string{"Two:x/a", "a:b:x/a", ":x/a", "tw*:x/a"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if p, _ := ParsePattern("*:x/a"); p.Literal() {
		t.Error("*:x/a is literal")
	}
}
