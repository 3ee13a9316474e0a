package manifest

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DNS is a scenario's name server: an external that answers queries for
// its records on UDP port 53, and the records it starts with. Steps change
// records (Step.DNS); probes reach names through it (docs/scenarios.md).
type DNS struct {
	Server  string // an external's name
	Records []DNSRecord
}

// DNSRecord is a name's addresses or its alias. With neither, a step
// removes the name.
type DNSRecord struct {
	Name  string // lower case, no trailing dot
	IPs   []netip.Addr
	CNAME string
	TTL   uint32 // seconds; 30 when not given
	Line  int
}

// DefaultDNSTTL is a record's TTL when the file gives none.
const DefaultDNSTTL = 30

// dns reads the top-level dns key.
func (l *loader) dns(v *Value, externals []External) *DNS {
	f := l.Fields(v, "dns", "server", "records")
	if f == nil {
		return nil
	}
	d := &DNS{}
	if sv, ok := f["server"]; ok {
		d.Server, _ = l.Str(sv, "server")
	}
	if !slices.ContainsFunc(externals, func(e External) bool { return e.Name == d.Server }) {
		l.Errorf(v.Line, "dns: server %q is not one of the externals", d.Server)
	}
	if rv, ok := f["records"]; ok {
		d.Records = l.dnsRecords(rv)
	}
	return d
}

// dnsRecords reads a list of records (the top level's or a step's).
func (l *loader) dnsRecords(v *Value) []DNSRecord {
	var out []DNSRecord
	for _, item := range l.List(v, "records", false) {
		f := l.Fields(item, "a DNS record", "name", "ips", "cname", "ttl")
		if f == nil {
			continue
		}
		r := DNSRecord{TTL: DefaultDNSTTL, Line: item.Line}
		if nv, ok := f["name"]; ok {
			r.Name, _ = l.Str(nv, "name")
			r.Name = strings.ToLower(strings.TrimSuffix(r.Name, "."))
		}
		if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 || !strings.Contains(r.Name, ".") {
			l.Errorf(item.Line, "DNS record name %q: want a name with a dot, such as www.example.com", r.Name)
			continue
		}
		if slices.ContainsFunc(out, func(o DNSRecord) bool { return o.Name == r.Name }) {
			l.Errorf(item.Line, "DNS record %s twice", r.Name)
			continue
		}
		if cv, ok := f["cname"]; ok {
			r.CNAME, _ = l.Str(cv, "cname")
			r.CNAME = strings.ToLower(strings.TrimSuffix(r.CNAME, "."))
		}
		if iv, ok := f["ips"]; ok {
			for _, a := range l.List(iv, "ips", true) {
				s, ok := l.Str(a, "an address")
				if !ok {
					continue
				}
				ip, err := netip.ParseAddr(s)
				if err != nil || ip.Zone() != "" || ip.Is4In6() {
					l.Errorf(a.Line, "DNS record %s: %q is not a plain address", r.Name, s)
					continue
				}
				r.IPs = append(r.IPs, ip)
			}
		}
		if r.CNAME != "" && len(r.IPs) > 0 {
			l.Errorf(item.Line, "DNS record %s: ips or cname, not both", r.Name)
		}
		if tv, ok := f["ttl"]; ok {
			s, _ := l.Str(tv, "ttl")
			n, err := strconv.ParseUint(s, 10, 31)
			if err != nil {
				l.Errorf(tv.Line, "DNS record %s: ttl %q: want seconds", r.Name, s)
			}
			r.TTL = uint32(n)
		}
		out = append(out, r)
	}
	return out
}

// duration reads a step's wait.
func (l *loader) duration(v *Value, what string) time.Duration {
	s, _ := l.Str(v, what)
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 10*time.Minute {
		l.Errorf(v.Line, "%s %q: want a duration such as 3s, at most 10m", what, s)
		return 0
	}
	return d
}
