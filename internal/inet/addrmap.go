package inet

import (
	"encoding/binary"
	"iter"
	"maps"
	"net/netip"
)

// AddrMap is a map keyed by IP address that keys IPv4 addresses as
// numbers: Go's maps hash and compare a uint32 key on a fast path, and a
// netip.Addr (24 bytes, one of them a pointer) on the generic one. Setting
// and deleting 5,000 IPv4 addresses in a map of 30,000 takes 0.33–0.37 ms
// against 0.60–0.63 ms keyed by netip.Addr (BenchmarkAddrMapMoves and
// BenchmarkNetipMapMoves). The zero AddrMap is empty and ready to use.
type AddrMap[V any] struct {
	v4 map[uint32]V
	v6 map[netip.Addr]V // every other address, IPv4-mapped IPv6 ones included
}

// Get returns a's value.
func (m *AddrMap[V]) Get(a netip.Addr) (V, bool) {
	if a.Is4() {
		v, ok := m.v4[V4Number(a)]
		return v, ok
	}
	v, ok := m.v6[a]
	return v, ok
}

// Set gives a the value v.
func (m *AddrMap[V]) Set(a netip.Addr, v V) {
	if a.Is4() {
		if m.v4 == nil {
			m.v4 = map[uint32]V{}
		}
		m.v4[V4Number(a)] = v
		return
	}
	if m.v6 == nil {
		m.v6 = map[netip.Addr]V{}
	}
	m.v6[a] = v
}

// Delete removes a.
func (m *AddrMap[V]) Delete(a netip.Addr) {
	if a.Is4() {
		delete(m.v4, V4Number(a))
	} else {
		delete(m.v6, a)
	}
}

// Len is the number of addresses.
func (m *AddrMap[V]) Len() int { return len(m.v4) + len(m.v6) }

// All yields the addresses and their values, in no order.
func (m *AddrMap[V]) All() iter.Seq2[netip.Addr, V] {
	return func(yield func(netip.Addr, V) bool) {
		for k, v := range m.v4 {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], k)
			if !yield(netip.AddrFrom4(b), v) {
				return
			}
		}
		for a, v := range m.v6 {
			if !yield(a, v) {
				return
			}
		}
	}
}

// Clone returns a copy.
func (m *AddrMap[V]) Clone() AddrMap[V] {
	return AddrMap[V]{v4: maps.Clone(m.v4), v6: maps.Clone(m.v6)}
}

// EqualAddrMaps reports whether a and b hold the same addresses with the
// same values.
func EqualAddrMaps[V comparable](a, b *AddrMap[V]) bool {
	return maps.Equal(a.v4, b.v4) && maps.Equal(a.v6, b.v6)
}

// V4Number is an IPv4 address as a number, in the addresses' order.
func V4Number(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}
