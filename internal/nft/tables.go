package nft

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NetworkTablePrefix starts the name of every secondary network's table,
// `inet nftpolicy-net-NAMESPACE.NAME` (docs/multinetwork.md).
const NetworkTablePrefix = TableName + "-net-"

// ListTables returns the names of the inet tables of the network namespace
// open as netnsFD (-1: the caller's) that start with prefix, sorted: the
// secondary networks' tables an agent or cleanup finds left from before
// (docs/multinetwork.md).
func ListTables(ctx context.Context, netnsFD int, prefix string) ([]string, error) {
	ns := 0
	if netnsFD >= 0 {
		ns = netnsFD
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns})
	if err != nil {
		return nil, fmt.Errorf("nft: list tables: %w", err)
	}
	defer c.Close()
	stop, err := guard(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("nft: list tables: %w", err)
	}
	defer stop()
	msgs, err := dumpRequest(c, unix.NFT_MSG_GETTABLE, netlink.Dump)
	if err != nil {
		return nil, fmt.Errorf("nft: list tables: %w", err)
	}
	var out []string
	for _, m := range msgs {
		ad, err := msgDecoder(m, unix.NFT_MSG_NEWTABLE)
		if err != nil {
			return nil, fmt.Errorf("nft: list tables: %w", err)
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_TABLE_NAME {
				if name := ad.String(); strings.HasPrefix(name, prefix) {
					out = append(out, name)
				}
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("nft: list tables: %w", err)
		}
	}
	sort.Strings(out)
	return out, nil
}
