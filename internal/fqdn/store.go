package fqdn

import (
	"net/netip"
	"slices"
	"time"
)

// Store keeps the bindings learned from answers until their records
// expire. TTLs are clamped: at least MinTTL, so that records with very
// short TTLs (common behind load balancers) do not flap in and out of the
// kernel between a client's lookups; at most MaxTTL, so that an address a
// name no longer has is not allowed for long. It is not safe for
// concurrent use.
type Store struct {
	MinTTL, MaxTTL time.Duration
	// MaxBindings bounds the memory and the kernel elements a flood of
	// answers can cost; answers that would go beyond it are dropped.
	MaxBindings int

	names map[string]map[netip.Addr]time.Time // name -> address -> expiry
	count int
	// next is no later than the earliest expiry (zero: none): an answer
	// lowers it in O(1); Expire, which walks every binding anyway, makes it
	// exact. A refresh can leave it early: Expire then finds nothing.
	next time.Time
	// Dropped counts bindings refused because the store was full.
	Dropped int
}

// NewStore makes an empty store.
func NewStore(minTTL, maxTTL time.Duration, maxBindings int) *Store {
	return &Store{MinTTL: minTTL, MaxTTL: maxTTL, MaxBindings: maxBindings, names: map[string]map[netip.Addr]time.Time{}}
}

// Observe records an answer's bindings at now and returns the names whose
// set of addresses changed (a refreshed binding changes nothing).
func (s *Store) Observe(recs []Record, now time.Time) []string {
	var changed []string
	for _, r := range recs {
		ttl := min(max(r.TTL, s.MinTTL), s.MaxTTL)
		until := now.Add(ttl)
		addrs := s.names[r.Name]
		if at, ok := addrs[r.Addr]; ok {
			if until.After(at) {
				addrs[r.Addr] = until
			}
			continue
		}
		if s.count >= s.MaxBindings {
			s.Dropped++
			continue
		}
		if addrs == nil {
			addrs = map[netip.Addr]time.Time{}
			s.names[r.Name] = addrs
		}
		addrs[r.Addr] = until
		s.count++
		if s.next.IsZero() || until.Before(s.next) {
			s.next = until
		}
		if !slices.Contains(changed, r.Name) {
			changed = append(changed, r.Name)
		}
	}
	return changed
}

// Expire forgets the bindings whose records expired by now and returns the
// names that lost addresses.
func (s *Store) Expire(now time.Time) []string {
	var changed []string
	s.next = time.Time{}
	for name, addrs := range s.names {
		for a, until := range addrs {
			if !until.After(now) {
				delete(addrs, a)
				s.count--
				if !slices.Contains(changed, name) {
					changed = append(changed, name)
				}
			} else if s.next.IsZero() || until.Before(s.next) {
				s.next = until
			}
		}
		if len(addrs) == 0 {
			delete(s.names, name)
		}
	}
	slices.Sort(changed)
	return changed
}

// Next is when the next binding expires, or a little before; false when
// there is none.
func (s *Store) Next() (time.Time, bool) { return s.next, !s.next.IsZero() }

// Addrs are the addresses a name is bound to now, sorted.
func (s *Store) Addrs(name string) []netip.Addr {
	out := make([]netip.Addr, 0, len(s.names[name]))
	for a := range s.names[name] {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Len is the number of bindings.
func (s *Store) Len() int { return s.count }
