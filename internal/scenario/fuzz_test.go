package scenario

import (
	"github.com/nftpolicy/nftpolicy/internal/manifest"

	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to the parser: it must never panic, must
// fail with located errors, and what it accepts must be usable.
func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"testdata/examples/*.yaml", "testdata/bad/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("name: x\nsteps: [{probe: {port: 80, expect: [x/a -> x/b: allowed]}}]\n"))
	f.Add([]byte("name: !!binary aGk=\n"))
	f.Add([]byte("name: x\nnodes: [n]\nobjects:\n- {apiVersion: policy.networking.k8s.io/v1beta1, kind: ClusterNetworkPolicy, metadata: {name: c}, " +
		"spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error is not an *Error: %#v", err)
			}
			return
		}
		if s.Name == "" || len(s.Nodes) == 0 || len(s.IPFamilies) == 0 {
			t.Fatalf("accepted a scenario without name, nodes or families: %+v", s)
		}
		for _, st := range s.Steps {
			if p := st.Probe; p != nil {
				for _, r := range probeResults(t, s, p) {
					_ = r.Status()
				}
			}
		}
	})
}

// probeResults plans p against every endpoint the scenario starts with;
// errors are fine (later steps change what exists), panics are not.
func probeResults(t *testing.T, s *Scenario, p *Probe) []Result {
	t.Helper()
	st := manifest.NewState()
	for _, o := range s.Objects {
		_ = st.Apply(o.DeepCopyObject())
	}
	results, _ := p.Plan(Endpoints(st, s.Externals))
	return results
}

// FuzzPattern checks that what ParsePattern accepts prints back as
// written and, when literal, names an endpoint it matches.
func FuzzPattern(f *testing.F) {
	for _, s := range []string{"*/*", "x/*", "*/a", "x/a", "external/e", "external/*", "node/n-1", "node/*", "x/a*", "a/b/c", "", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			if !errors.Is(err, ErrPattern) {
				t.Fatalf("ParsePattern(%q) error %v is not an ErrPattern", s, err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePattern(%q).String() = %q", s, p.String())
		}
		if e, ok := p.Endpoint(); ok {
			if !p.Matches(e) || e.String() != s {
				t.Fatalf("literal %q: endpoint %v does not match or print back", s, e)
			}
			var back Endpoint
			if err := back.UnmarshalText([]byte(e.String())); err != nil || back != e {
				t.Fatalf("endpoint %v does not round-trip: %v, %v", e, back, err)
			}
		}
		// An expect line built from it parses to the same pattern.
		el, err := ParseExpectLine(s + " -> " + s + ": allowed")
		if err != nil || el.From != p || el.To != p || !el.Allowed {
			t.Fatalf("expect line around %q = %+v, %v", s, el, err)
		}
	})
}

// FuzzExpectLine checks that ParseExpectLine never panics and that what
// it accepts prints back into something it parses the same way.
func FuzzExpectLine(f *testing.F) {
	for _, s := range []string{"*/* -> */*: allowed", "x/a->y/b:denied", "a -> b", "x/a -> y/b: maybe", ":", "->:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseExpectLine(s)
		if err != nil {
			return
		}
		again, err := ParseExpectLine(e.String())
		if err != nil || again != e {
			t.Fatalf("ParseExpectLine(%q) = %+v; its String %q parses to %+v, %v", s, e, e.String(), again, err)
		}
	})
}
