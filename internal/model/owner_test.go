package model_test

import (
	"net/netip"
	"slices"
	"testing"

	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestOwnedIPsFollowSharing: OwnedIPs answers from a flag the address index
// keeps (no lookup while a pod's addresses are its alone); the flag must
// follow another pod starting and stopping to list one of them, whichever
// pod changes.
func TestOwnedIPsFollowSharing(t *testing.T) {
	c := cluster(t)
	owned := func(ns, name string) []string {
		var out []string
		for _, ip := range c.OwnedIPs(c.Pods[ns+"/"+name]) {
			out = append(out, ip.String())
		}
		return out
	}
	want := func(step, ns, name string, addrs ...string) {
		t.Helper()
		if got := owned(ns, name); !slices.Equal(got, addrs) {
			t.Errorf("%s: %s/%s owns %v, want %v", step, ns, name, got, addrs)
		}
	}
	want("alone", "x", "b", "10.0.1.2")
	// a/z (before x/b by key) lists x/b's address: it takes it; then
	// stops.
	if err := c.Set(tu.Pod("a", "z", "n1", m{}, []string{"10.0.1.2"})); err != nil {
		t.Fatal(err)
	}
	want("taken by a pod before", "x", "b")
	if err := c.Delete("Pod", "a", "z"); err != nil {
		t.Fatal(err)
	}
	want("alone again", "x", "b", "10.0.1.2")
	// z/b lists x/b's address: x/b comes first by key and keeps it.
	set := func(ips ...string) {
		if err := c.Set(tu.Pod("z", "b", "n1", m{}, ips)); err != nil {
			t.Fatal(err)
		}
	}
	set("10.0.1.2", "10.0.9.9")
	want("shared", "x", "b", "10.0.1.2")
	want("shared", "z", "b", "10.0.9.9")
	// x/b leaves: z/b owns both.
	if err := c.Delete("Pod", "x", "b"); err != nil {
		t.Fatal(err)
	}
	want("first gone", "z", "b", "10.0.1.2", "10.0.9.9")
	// w/a (before z/b by key) takes one; then lets it go again.
	if err := c.Set(tu.Pod("w", "a", "n1", m{}, []string{"10.0.9.9"})); err != nil {
		t.Fatal(err)
	}
	want("taken", "z", "b", "10.0.1.2")
	if err := c.Set(tu.Pod("w", "a", "n1", m{}, []string{"10.0.7.7"})); err != nil {
		t.Fatal(err)
	}
	want("given back", "z", "b", "10.0.1.2", "10.0.9.9")
	want("given back", "w", "a", "10.0.7.7")
	if !c.Owns(c.Pods["z/b"], netip.MustParseAddr("10.0.9.9")) {
		t.Error("Owns disagrees with OwnedIPs")
	}
}
