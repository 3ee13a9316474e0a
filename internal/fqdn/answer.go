// Package fqdn learns which addresses DNS names have from the DNS answers
// the kernel copies to the agent, and keeps each binding while its record
// lives: what a domainNames peer matches.
package fqdn

import (
	"net/netip"
	"slices"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// Record binds a canonical name to an address for TTL.
type Record struct {
	Name string
	Addr netip.Addr
	TTL  time.Duration
}

// maxChain bounds the CNAME chain followed from the question: resolvers stop
// long before (a loop is caught by it too).
const maxChain = 16

// Parse reads a DNS response (a UDP payload) and returns the bindings it
// proves: the address records of the question's name, and of the names a
// chain of CNAMEs from the question leads to, each bound for the smallest
// TTL along its chain. Every name on the chain is bound, so a policy may
// name the alias the client asked for or the name it points to. Records
// off the chain are ignored: an answer can only vouch for what was asked.
// Anything that is not a successful response yields nothing.
func Parse(msg []byte) ([]Record, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	if !h.Response || h.RCode != dnsmessage.RCodeSuccess {
		return nil, nil
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, err
	}
	answers, err := p.AllAnswers()
	if err != nil {
		return nil, err
	}
	type step struct {
		name string
		ttl  uint32 // of the CNAME that leads here from the step before
	}
	chain := []step{{model.CanonicalName(q.Name.String()), 0}}
	if chain[0].name == "" {
		return nil, nil // the root: no policy names it
	}
	for len(chain) < maxChain {
		last := chain[len(chain)-1].name
		next := ""
		var ttl uint32
		for _, a := range answers {
			if c, ok := a.Body.(*dnsmessage.CNAMEResource); ok && model.CanonicalName(a.Header.Name.String()) == last {
				next, ttl = model.CanonicalName(c.CNAME.String()), a.Header.TTL
				break
			}
		}
		if next == "" || slices.ContainsFunc(chain, func(s step) bool { return s.name == next }) {
			break // the end, or a loop
		}
		chain = append(chain, step{next, ttl})
	}
	var out []Record
	for i, s := range chain {
		for _, a := range answers {
			if model.CanonicalName(a.Header.Name.String()) != s.name {
				continue
			}
			var addr netip.Addr
			switch b := a.Body.(type) {
			case *dnsmessage.AResource:
				addr = netip.AddrFrom4(b.A)
			case *dnsmessage.AAAAResource:
				addr = netip.AddrFrom16(b.AAAA).Unmap()
			default:
				continue
			}
			// Bind the address to every name on the chain up to here, for
			// the smallest TTL of the records from that name down.
			ttl := a.Header.TTL
			for j := i; j >= 0; j-- {
				out = append(out, Record{Name: chain[j].name, Addr: addr, TTL: time.Duration(ttl) * time.Second})
				ttl = min(ttl, chain[j].ttl)
			}
		}
	}
	return out, nil
}
