package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// cleanupCmd removes everything nftpolicy created on this node: its one
// table, and the secondary networks' tables (docs/ruleset.md: nftpolicy
// writes to nothing else). For
// uninstalling; a running agent would program the table again.
func cleanupCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	netns := fs.String("netns", "", "clean up in this network namespace (a path such as /run/netns/NAME) instead of the current one")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	fd := -1
	if *netns != "" {
		f, err := os.Open(*netns)
		if err != nil {
			fmt.Fprintln(stderr, "nftpolicy cleanup:", err)
			return 1
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	removed, err := cleanup(ctx, nft.NewNetlink(fd))
	if err != nil {
		fmt.Fprintln(stderr, "nftpolicy cleanup:", err)
		return 1
	}
	if removed {
		fmt.Fprintf(stdout, "removed table inet %s\n", nft.TableName)
	} else {
		fmt.Fprintf(stdout, "no table inet %s: nothing to remove\n", nft.TableName)
	}
	// The secondary networks' tables (docs/multinetwork.md).
	names, err := nft.ListTables(ctx, fd, nft.NetworkTablePrefix)
	if err != nil {
		fmt.Fprintln(stderr, "nftpolicy cleanup:", err)
		return 1
	}
	for _, name := range names {
		if _, err := cleanup(ctx, nft.NewNetlinkTable(fd, name)); err != nil {
			fmt.Fprintln(stderr, "nftpolicy cleanup:", err)
			return 1
		}
		fmt.Fprintf(stdout, "removed table inet %s\n", name)
	}
	return 0
}

// cleanup deletes the nftpolicy table if there is one.
func cleanup(ctx context.Context, k nft.Kernel) (bool, error) {
	rs, err := k.Dump(ctx)
	if err != nil || rs == nil {
		return false, err
	}
	tx := &nft.Transaction{}
	tx.Add(nft.Op{Kind: nft.OpDeleteTable})
	if err := k.Apply(ctx, tx); err != nil {
		return false, err
	}
	return true, nil
}
