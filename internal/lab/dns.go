package lab

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/fqdn"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// The scenario's name server (docs/scenarios.md, "DNS"): an external that
// answers queries for its records on UDP port 53, as an authoritative
// server would, and a prober that asks it for a name and connects to the
// answer at once, as a client does.

// dnsMinTTL is the lab agents' --fqdn-min-ttl: short, so that scenarios can
// watch a record expire within seconds.
const dnsMinTTL = time.Second

// NameServer answers DNS queries from the records it holds now.
type NameServer struct {
	mu      sync.Mutex
	records map[string]manifest.DNSRecord
}

// NewNameServer holds records.
func NewNameServer(records []manifest.DNSRecord) *NameServer {
	s := &NameServer{records: map[string]manifest.DNSRecord{}}
	s.Update(records)
	return s
}

// Update replaces the records of the names in rs (no ips and no cname:
// the name goes).
func (s *NameServer) Update(rs []manifest.DNSRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if len(r.IPs) == 0 && r.CNAME == "" {
			delete(s.records, r.Name)
		} else {
			s.records[r.Name] = r
		}
	}
}

// resolve follows name's CNAMEs (at most 8) and returns the chain's
// records, the last one holding the addresses.
func (s *NameServer) resolve(name string) []manifest.DNSRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	var chain []manifest.DNSRecord
	for range 8 {
		r, ok := s.records[name]
		if !ok {
			break
		}
		chain = append(chain, r)
		if r.CNAME == "" {
			break
		}
		name = r.CNAME
	}
	return chain
}

// addrs is what the server answers for name in family now.
func (s *NameServer) addrs(name string, family int) []netip.Addr {
	var out []netip.Addr
	chain := s.resolve(name)
	if len(chain) == 0 {
		return nil
	}
	for _, a := range chain[len(chain)-1].IPs {
		if a.Is4() == (family == 4) {
			out = append(out, a)
		}
	}
	return out
}

// Answer answers one query: the CNAME chain and the addresses of its end
// of the type asked; NXDOMAIN for a name it has no record of.
func (s *NameServer) Answer(query []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	chain := s.resolve(model.CanonicalName(q.Name.String()))
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	if len(chain) == 0 {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	if b.StartQuestions() != nil || b.Question(q) != nil || b.StartAnswers() != nil {
		return nil
	}
	for _, r := range chain {
		name, err := dnsmessage.NewName(r.Name + ".")
		if err != nil {
			return nil
		}
		hdr := dnsmessage.ResourceHeader{Name: name, Class: dnsmessage.ClassINET, TTL: r.TTL}
		if r.CNAME != "" {
			target, err := dnsmessage.NewName(r.CNAME + ".")
			if err != nil || b.CNAMEResource(hdr, dnsmessage.CNAMEResource{CNAME: target}) != nil {
				return nil
			}
			continue
		}
		for _, a := range r.IPs {
			switch {
			case a.Is4() && q.Type == dnsmessage.TypeA:
				err = b.AResource(hdr, dnsmessage.AResource{A: a.As4()})
			case a.Is6() && q.Type == dnsmessage.TypeAAAA:
				err = b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
			if err != nil {
				return nil
			}
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}

// startNameServer serves the scenario's records from its server external.
func (r *run) startNameServer() error {
	d := r.sc.DNS
	if d == nil {
		return nil
	}
	r.names = NewNameServer(d.Records)
	return r.net.ServeUDP("external/"+d.Server, 53, r.names.Answer)
}

// lookup asks the scenario's name server for name from the endpoint from.
func (r *run) lookup(ctx context.Context, from, name string, family int) ([]netip.Addr, error) {
	server, ok := r.serverAddr(family)
	if !ok {
		return nil, fmt.Errorf("the name server %s has no IPv%d address", r.sc.DNS.Server, family)
	}
	return Resolve(ctx, r.net, from, server, name, family, r.opts.ProbeTimeout)
}

// Resolve asks the name server at server for name from the lab endpoint
// from, as a stub resolver does (one query of the family's type), and
// returns the addresses the answer gives the name.
func Resolve(ctx context.Context, n *netlab.Lab, from string, server netip.Addr, name string, family int, timeout time.Duration) ([]netip.Addr, error) {
	qtype := dnsmessage.TypeA
	if family == 6 {
		qtype = dnsmessage.TypeAAAA
	}
	qname, err := dnsmessage.NewName(name + ".")
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: uint16(time.Now().UnixNano()), RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: qname, Type: qtype, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	query, err := b.Finish()
	if err != nil {
		return nil, err
	}
	resp, err := n.Exchange(ctx, from, netip.AddrPortFrom(server, 53), query, timeout)
	if err != nil {
		return nil, err
	}
	recs, err := fqdn.Parse(resp)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, rec := range recs {
		if rec.Name == name {
			out = append(out, rec.Addr)
		}
	}
	return out, nil
}

func (r *run) serverAddr(family int) (netip.Addr, bool) {
	for _, e := range r.sc.Externals {
		if e.Name != r.sc.DNS.Server {
			continue
		}
		for _, a := range e.IPs {
			if a.Is4() == (family == 4) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// probeName resolves the pair's name from its source (unless the probe
// says not to) and connects to the first address of the family at once,
// with the retries of any pair expected to pass: each try asks again.
func (r *run) probeName(ctx context.Context, p *scenario.Probe, family int, res *scenario.Result) {
	if p.Port.IntVal == 0 {
		res.Got = scenario.Outcome{Verdict: scenario.Denied, Detail: scenario.DetailNoPort}
		return
	}
	res.Port = p.Port.IntVal
	for try := 0; try < probeTries; try++ {
		var addrs []netip.Addr
		if p.NoResolve {
			addrs = r.names.addrs(res.To.Name, family)
		} else {
			var err error
			if addrs, err = r.lookup(ctx, res.From.String(), res.To.Name, family); err != nil {
				res.Got = scenario.Outcome{Verdict: scenario.Denied, Detail: "no answer: " + err.Error()}
				continue // the query itself may be what a policy drops
			}
		}
		if len(addrs) == 0 {
			res.Got = scenario.Outcome{Verdict: scenario.Denied, Detail: scenario.DetailNoAddress}
			return
		}
		res.Got = outcome(r.net.ProbeAddr(ctx, res.From.String(), addrs[0], string(p.Protocol), uint16(res.Port), r.opts.ProbeTimeout))
		if res.Want.Verdict != scenario.Allowed || res.Got.Verdict == scenario.Allowed {
			return
		}
	}
}

// dnsGroup is the agents' NFLOG group of DNS answers (0: none).
func (r *run) dnsGroup() uint16 {
	if r.opts.NoDNSLearning {
		return 0
	}
	return model.DefaultDNSGroup
}

// DNSAnswersIn reads the copies of DNS answers in the node namespace fd.
func DNSAnswersIn(fd int) agent.PacketSource {
	return func(ctx context.Context, group uint16, copyBytes uint32, fn func(nft.LogEvent)) error {
		return nft.ReadPackets(ctx, fd, group, copyBytes, fn)
	}
}
