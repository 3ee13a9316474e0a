package inet

import (
	"maps"
	"net/netip"
	"testing"
)

// TestAddrMap: IPv4, IPv6 and IPv4-mapped IPv6 addresses are distinct
// keys, set, got, deleted, listed and compared as in a map keyed by
// netip.Addr.
func TestAddrMap(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:10.0.0.1"),
	}
	var m AddrMap[int]
	want := map[netip.Addr]int{}
	if _, ok := m.Get(addrs[0]); ok || m.Len() != 0 {
		t.Fatal("the zero AddrMap is not empty")
	}
	for i, a := range addrs {
		m.Set(a, i)
		want[a] = i
	}
	m.Set(addrs[0], 7)
	want[addrs[0]] = 7
	for a, v := range want {
		if got, ok := m.Get(a); !ok || got != v {
			t.Errorf("Get(%s) = %d, %v; want %d", a, got, ok, v)
		}
	}
	if got := maps.Collect(m.All()); !maps.Equal(got, want) {
		t.Errorf("All() = %v, want %v", got, want)
	}
	c := m.Clone()
	if !EqualAddrMaps(&m, &c) {
		t.Error("a clone is not equal")
	}
	m.Delete(addrs[4])
	delete(want, addrs[4])
	if _, ok := m.Get(addrs[4]); ok || m.Len() != len(want) {
		t.Errorf("after Delete(%s): still there, or Len %d want %d", addrs[4], m.Len(), len(want))
	}
	if _, ok := m.Get(addrs[0]); !ok {
		t.Errorf("Delete(%s) took %s with it", addrs[4], addrs[0])
	}
	if EqualAddrMaps(&m, &c) {
		t.Error("maps with different addresses compare equal")
	}
	if got := maps.Collect(m.All()); !maps.Equal(got, want) {
		t.Errorf("All() = %v, want %v", got, want)
	}
}
