package nft

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"iter"
	"math/rand"
	"net/netip"
	"slices"
	"strings"
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

// TestSortElemsOrdersByEveryField: long lists (sorted by numbers of their
// IPv4 addresses) and short or mixed ones (sorted field by field) come out
// in compareElems' order, repeats and one address's several elements
// included.
func TestSortElemsOrdersByEveryField(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	addr := func(v6 bool) netip.Addr {
		if v6 {
			return netip.AddrFrom16([16]byte{0xfd, 15: byte(r.Intn(8))})
		}
		return netip.AddrFrom4([4]byte{10, 0, byte(r.Intn(4)), byte(r.Intn(256))})
	}
	for _, n := range []int{0, 1, 10, sortByKeyFrom - 1, sortByKeyFrom, 5000} {
		for _, mixed := range []bool{false, true} {
			elems := make([]Elem, n)
			for i := range elems {
				elems[i] = Elem{Addr: addr(mixed && r.Intn(2) == 0), Proto: uint8(r.Intn(2) * 6), Port: uint16(r.Intn(3)), Chain: fmt.Sprint("c", r.Intn(3))}
			}
			want := slices.Clone(elems)
			slices.SortFunc(want, compareElems)
			if got := SortElems(elems); !slices.Equal(got, want) {
				t.Errorf("%d elements (mixed families %v): not in compareElems' order", n, mixed)
			}
		}
	}
}

// BenchmarkSortElems sorts the ids-map elements of a new selector's
// members at L: 4,800 IPv4 addresses, each to an identity chain.
func BenchmarkSortElems(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	src := make([]Elem, 4800)
	for i := range src {
		src[i] = Elem{Addr: netip.AddrFrom4([4]byte{10, byte(r.Intn(256)), byte(r.Intn(256)), byte(r.Intn(256))}), Chain: "ingress-id-5ef463cd604684ab"}
	}
	buf := make([]Elem, len(src))
	for range b.N {
		copy(buf, src)
		SortElems(buf)
	}
}

// addrChains is a map from addresses to chains as a view's source.
type addrChains map[netip.Addr]string

func (m addrChains) Verdict(a netip.Addr) (string, bool) { c, ok := m[a]; return c, ok }
func (m addrChains) Len() int                            { return len(m) }
func (m addrChains) All() iter.Seq2[netip.Addr, string] {
	return func(yield func(netip.Addr, string) bool) {
		for a, c := range m {
			if !yield(a, c) {
				return
			}
		}
	}
}

// TestView: a view shows its source's elements as they change, compares
// equal to a set of its own holding them, clones into a set of its own,
// answers the tracer's lookups, and cannot be changed through the set.
func TestView(t *testing.T) {
	a1, a2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	src := addrChains{a1: "x"}
	v := NewView("ids", MapIPv4Verdict, "c", src)
	own := NewSet("ids", MapIPv4Verdict, "c")
	own.Add(Elem{Addr: a1, Chain: "x"})
	if !v.IsView() || own.IsView() {
		t.Fatal("IsView")
	}
	if !v.Has(Elem{Addr: a1, Chain: "x"}) || v.Has(Elem{Addr: a1, Chain: "y"}) || v.Len() != 1 || !v.Equal(own) || !own.Equal(v) {
		t.Fatalf("view of %v: has, len or equal wrong", src)
	}
	clone := v.clone()
	src[a1], src[a2] = "y", "x"
	if !v.Has(Elem{Addr: a1, Chain: "y"}) || v.Len() != 2 || v.Equal(own) {
		t.Errorf("the view does not follow its source")
	}
	if clone.IsView() || !clone.Equal(own) {
		t.Errorf("the clone changed with the source: %v", clone.Sorted())
	}
	if got := v.Sorted(); !slices.Equal(got, []Elem{{Addr: a1, Chain: "y"}, {Addr: a2, Chain: "x"}}) {
		t.Errorf("elements %v", got)
	}
	if e, ok := v.find(Elem{Addr: a2}); !ok || e.Chain != "x" {
		t.Errorf("find: %v %v", e, ok)
	}
	for name, change := range map[string]func(){
		"Add": func() { v.Add(Elem{Addr: a1, Chain: "z"}) }, "Delete": func() { v.Delete(Elem{Addr: a1, Chain: "y"}) }, "Clear": v.Clear,
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s on a view did not panic", name)
				}
			}()
			change()
		}()
	}
}

// TestsortHigh32 orders numbers by their high 32 bits and keeps the order
// of those that share them, as a stable sort does.
func TestSortHigh32(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, n := range []int{0, 1, 2, 255, 4800} {
		highs := make([]uint32, n/3+1) // so that some keys share them
		for i := range highs {
			highs[i] = r.Uint32()
		}
		keys := make([]uint64, n)
		for i := range keys {
			keys[i] = uint64(highs[r.Intn(len(highs))])<<32 | r.Uint64()&0xffffffff
		}
		want := slices.Clone(keys)
		slices.SortStableFunc(want, func(a, b uint64) int { return cmp.Compare(a>>32, b>>32) })
		sortHigh32(keys)
		if !slices.Equal(keys, want) {
			t.Errorf("%d keys: not in stable order of their high bits", n)
		}
	}
}

// TestSortedOnce: true only of elements in SortElems' order, each once.
func TestSortedOnce(t *testing.T) {
	e := func(a string, c string) Elem { return Elem{Addr: netip.MustParseAddr(a), Chain: c} }
	for _, tc := range []struct {
		elems []Elem
		want  bool
	}{
		{nil, true},
		{[]Elem{e("10.0.0.1", "a")}, true},
		{[]Elem{e("10.0.0.1", "a"), e("10.0.0.1", "b"), e("10.0.0.2", "a")}, true},
		{[]Elem{e("10.0.0.1", "a"), e("10.0.0.1", "a")}, false},
		{[]Elem{e("10.0.0.2", "a"), e("10.0.0.1", "a")}, false},
	} {
		if got := SortedOnce(tc.elems); got != tc.want {
			t.Errorf("SortedOnce(%v) = %v", tc.elems, got)
		}
	}
}

// TestName: names are the prefix, the FNV-1a hash of the whole identity in
// eight hex digits and the identity with what nft does not accept in an
// identifier folded to underscores, cut at MaxNameLen without a trailing
// separator; written as a format here, on random identities.
func TestName(t *testing.T) {
	want := func(prefix, identity string) string {
		h := fnv.New32a()
		h.Write([]byte(identity))
		var b strings.Builder
		folded := false
		for _, r := range identity {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '/':
				b.WriteRune(r)
				folded = false
			case !folded:
				b.WriteByte('_')
				folded = true
			}
		}
		n := fmt.Sprintf("%s-%08x-%s", prefix, h.Sum32(), b.String())
		if len(n) > MaxNameLen {
			n = n[:MaxNameLen]
		}
		return strings.TrimRight(n, "-_./")
	}
	r := rand.New(rand.NewSource(1))
	alphabet := []rune("ab/-._ ,#é日Z09")
	for i := range 2000 {
		id := make([]rune, r.Intn(90))
		for j := range id {
			id[j] = alphabet[r.Intn(len(alphabet))]
		}
		prefix := []string{"ingress-class", "v-egress", "x"}[i%3]
		if got, w := Name(prefix, string(id)), want(prefix, string(id)); got != w {
			t.Fatalf("Name(%q, %q) = %q, want %q", prefix, string(id), got, w)
		}
	}
}

// TestAddrOrder: indexes in their addresses' order, IPv4 before IPv6, those
// of one address in index order.
func TestAddrOrder(t *testing.T) {
	addrs := []netip.Addr{
		netip.MustParseAddr("fd00::2"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2"),
	}
	got := AddrOrder(len(addrs), func(i int) netip.Addr { return addrs[i] })
	if want := []int{2, 1, 4, 3, 0, 5}; !slices.Equal(got, want) {
		t.Errorf("AddrOrder = %v, want %v", got, want)
	}
}
