package inet

import (
	"maps"
	"math/rand"
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

// moveAddrs are a map's 30,000 IPv4 addresses and 5,000 to move in it.
func moveAddrs() (base, moves []netip.Addr) {
	r := rand.New(rand.NewSource(1))
	addr := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(r.Intn(256)), byte(r.Intn(256)), byte(r.Intn(256))})
	}
	for range 30000 {
		base = append(base, addr())
	}
	for range 5000 {
		moves = append(moves, addr())
	}
	return base, moves
}

// BenchmarkAddrMapMoves sets 5,000 IPv4 addresses in an AddrMap of 30,000
// and deletes them again; BenchmarkNetipMapMoves does the same in a map
// keyed by netip.Addr.
func BenchmarkAddrMapMoves(b *testing.B) {
	base, moves := moveAddrs()
	var m AddrMap[string]
	for _, a := range base {
		m.Set(a, "x")
	}
	for range b.N {
		for _, a := range moves {
			m.Set(a, "y")
		}
		for _, a := range moves {
			if v, ok := m.Get(a); ok && v == "y" {
				m.Delete(a)
			}
		}
	}
}

func BenchmarkNetipMapMoves(b *testing.B) {
	base, moves := moveAddrs()
	m := map[netip.Addr]string{}
	for _, a := range base {
		m[a] = "x"
	}
	for range b.N {
		for _, a := range moves {
			m[a] = "y"
		}
		for _, a := range moves {
			if v, ok := m[a]; ok && v == "y" {
				delete(m, a)
			}
		}
	}
}
