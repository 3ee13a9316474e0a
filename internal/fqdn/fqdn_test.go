package fqdn

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

type rr struct {
	name, cname string
	addr        string
	ttl         uint32
}

// answer builds a response to a question for q with the given records.
func answer(t testing.TB, q string, rcode dnsmessage.RCode, rrs ...rr) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true, RCode: rcode})
	b.EnableCompression()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(q), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	for _, r := range rrs {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(r.name), Class: dnsmessage.ClassINET, TTL: r.ttl}
		switch {
		case r.cname != "":
			must(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(r.cname)}))
		case netip.MustParseAddr(r.addr).Is4():
			must(b.AResource(h, dnsmessage.AResource{A: netip.MustParseAddr(r.addr).As4()}))
		default:
			must(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(r.addr).As16()}))
		}
	}
	msg, err := b.Finish()
	must(err)
	return msg
}

func rec(name, addr string, ttl int) Record {
	return Record{Name: name, Addr: netip.MustParseAddr(addr), TTL: time.Duration(ttl) * time.Second}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want []Record
	}{
		{name: "A and AAAA of the question", msg: answer(t, "WWW.Example.com.", 0,
			rr{name: "www.example.com.", addr: "192.0.2.1", ttl: 30}, rr{name: "www.example.com.", addr: "2001:db8::1", ttl: 60}),
			want: []Record{rec("www.example.com", "192.0.2.1", 30), rec("www.example.com", "2001:db8::1", 60)}},
		{name: "a CNAME chain binds every name, each for the smallest TTL from it down", msg: answer(t, "www.example.com.", 0,
			rr{name: "www.example.com.", cname: "edge.cdn.net.", ttl: 20},
			rr{name: "edge.cdn.net.", cname: "pop1.cdn.net.", ttl: 300},
			rr{name: "pop1.cdn.net.", addr: "198.51.100.7", ttl: 100}),
			want: []Record{rec("pop1.cdn.net", "198.51.100.7", 100), rec("edge.cdn.net", "198.51.100.7", 100), rec("www.example.com", "198.51.100.7", 20)}},
		{name: "records off the chain vouch for nothing", msg: answer(t, "www.example.com.", 0,
			rr{name: "www.example.com.", addr: "192.0.2.1", ttl: 30}, rr{name: "bank.example.org.", addr: "203.0.113.9", ttl: 30}),
			want: []Record{rec("www.example.com", "192.0.2.1", 30)}},
		{name: "a CNAME loop ends", msg: answer(t, "a.example.com.", 0,
			rr{name: "a.example.com.", cname: "b.example.com.", ttl: 5}, rr{name: "b.example.com.", cname: "a.example.com.", ttl: 5})},
		{name: "NXDOMAIN binds nothing", msg: answer(t, "www.example.com.", dnsmessage.RCodeNameError, rr{name: "www.example.com.", addr: "192.0.2.1", ttl: 30})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	// A query is not an answer.
	q := answer(t, "www.example.com.", 0, rr{name: "www.example.com.", addr: "192.0.2.1", ttl: 30})
	q[2] &^= 0x80 // clear QR
	if got, err := Parse(q); err != nil || len(got) != 0 {
		t.Fatalf("a query gave %v, %v", got, err)
	}
}

// FuzzParse: answers come from the network; nothing in them may crash the
// agent, and every binding names a canonical name and a valid address.
func FuzzParse(f *testing.F) {
	f.Add(answer(f, "www.example.com.", 0, rr{name: "www.example.com.", addr: "192.0.2.1", ttl: 30}))
	f.Add(answer(f, "a.example.com.", 0, rr{name: "a.example.com.", cname: "b.example.com.", ttl: 5}, rr{name: "b.example.com.", addr: "::1", ttl: 5}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		recs, _ := Parse(msg)
		for _, r := range recs {
			if !r.Addr.IsValid() || r.Name == "" || r.TTL < 0 {
				t.Fatalf("bad record %+v", r)
			}
		}
	})
}

func TestStore(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewStore(10*time.Second, time.Hour, 3)
	if got := s.Observe([]Record{rec("a.io", "192.0.2.1", 1), rec("a.io", "192.0.2.2", 86400)}, now); !slices.Equal(got, []string{"a.io"}) {
		t.Fatalf("changed %v", got)
	}
	if got := s.Observe([]Record{rec("a.io", "192.0.2.1", 60)}, now); len(got) != 0 {
		t.Fatalf("a refresh changed %v", got)
	}
	// The 1 s record was clamped up to 10 s, then refreshed to 60 s.
	if got := s.Expire(now.Add(30 * time.Second)); len(got) != 0 {
		t.Fatalf("expired %v at 30 s", got)
	}
	if got := s.Expire(now.Add(61 * time.Second)); !slices.Equal(got, []string{"a.io"}) || !slices.Equal(s.Addrs("a.io"), []netip.Addr{netip.MustParseAddr("192.0.2.2")}) {
		t.Fatalf("at 61 s expired %v, left %v", got, s.Addrs("a.io"))
	}
	// The day-long record was clamped down to an hour.
	if next, ok := s.Next(); !ok || !next.Equal(now.Add(time.Hour)) {
		t.Fatalf("next expiry %v, want %v", next, now.Add(time.Hour))
	}
	s.Observe([]Record{rec("b.io", "192.0.2.3", 60), rec("c.io", "192.0.2.4", 60), rec("d.io", "192.0.2.5", 60)}, now)
	if s.Len() != 3 || s.Dropped != 1 {
		t.Fatalf("len %d dropped %d, want 3 and 1", s.Len(), s.Dropped)
	}
}
