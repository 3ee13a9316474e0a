package nft

import (
	"net/netip"
	"slices"
	"testing"
)

// TestVerdictMapKeysByAddress: a plain verdict map holds one element per
// address, as the kernel does: adding an address's element to another
// chain replaces it, deleting its element to a chain it no longer goes to
// leaves it, and only the exact element is held. A hash set keeps whole
// elements, and a copy or an equal set compares equal.
func TestVerdictMapKeysByAddress(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	m := NewSet("m", MapIPv4Verdict, "")
	m.Add(Elem{Addr: a, Chain: "x"}, Elem{Addr: b, Chain: "x"})
	m.Add(Elem{Addr: a, Chain: "y"}) // a moves, as an event's new element is added before the old is deleted
	m.Delete(Elem{Addr: a, Chain: "x"})
	if got, want := m.Sorted(), []Elem{{Addr: a, Chain: "y"}, {Addr: b, Chain: "x"}}; !slices.Equal(got, want) {
		t.Errorf("after the move: %v, want %v", got, want)
	}
	for _, tc := range []struct {
		e    Elem
		want bool
	}{
		{Elem{Addr: a, Chain: "y"}, true},
		{Elem{Addr: a, Chain: "x"}, false},
		{Elem{Addr: a, Chain: "y", Port: 80}, false},
		{Elem{Addr: netip.MustParseAddr("10.0.0.3"), Chain: "y"}, false},
	} {
		if got := m.Has(tc.e); got != tc.want {
			t.Errorf("Has(%+v) = %v, want %v", tc.e, got, tc.want)
		}
	}
	c := m.clone()
	if !m.Equal(c) || m.Len() != 2 {
		t.Errorf("a copy differs, or the map holds %d elements, want 2", m.Len())
	}
	c.Delete(Elem{Addr: b, Chain: "x"})
	if m.Equal(c) || m.Len() != 2 || c.Len() != 1 {
		t.Errorf("deleting from the copy: map %d elements, copy %d; want 2 and 1, unequal", m.Len(), c.Len())
	}

	s := NewSet("s", SetIPv4ProtoPort, "")
	s.Add(Elem{Addr: a, Proto: ProtoTCP, Port: 80}, Elem{Addr: a, Proto: ProtoTCP, Port: 81})
	s.Delete(Elem{Addr: a, Proto: ProtoTCP, Port: 80})
	if got, want := s.Sorted(), []Elem{{Addr: a, Proto: ProtoTCP, Port: 81}}; !slices.Equal(got, want) {
		t.Errorf("hash set: %v, want %v", got, want)
	}
	s.Clear()
	if s.Len() != 0 || !s.Equal(NewSet("s", SetIPv4ProtoPort, "")) {
		t.Errorf("cleared set: %d elements", s.Len())
	}
}
