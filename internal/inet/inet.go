// Package inet holds the IP-level facts that both the policy model and the
// nftables layer speak, so that each is written once: the protocol numbers
// Kubernetes policies can name, their names, and a map keyed by address.
package inet

import "strconv"

// IP protocol numbers (IANA).
const (
	TCP  uint8 = 6
	UDP  uint8 = 17
	SCTP uint8 = 132
)

// ProtoName is the lower-case name of an IP protocol number as nft writes
// it ("tcp"), or the number itself for a protocol without one here.
func ProtoName(p uint8) string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}
