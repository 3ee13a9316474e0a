package bench

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// nftCommentMax is the longest comment the nft CLI accepts (the kernel takes
// more over netlink, and nftpolicy writes up to nft.MaxCommentLen = 200).
const nftCommentMax = 128

var commentRE = regexp.MustCompile(`comment "([^"]*)"`)

// forNftCLI cuts comments to what nft parses, so baseline (b) loads the same
// objects; it returns how many it cut.
func forNftCLI(script string) (string, int) {
	cut := 0
	out := commentRE.ReplaceAllStringFunc(script, func(m string) string {
		body := m[len(`comment "`) : len(m)-1]
		if len(body) <= nftCommentMax {
			return m
		}
		cut++
		return `comment "` + body[:nftCommentMax] + `"`
	})
	return out, cut
}

// nftLoad times `nft -f -` fed script inside ns: what an agent built on
// knftables pays for a transaction (knftables pipes its transaction to
// `nft -f -`), the nft process's start included.
func nftLoad(ns *NetNS, script string) (time.Duration, error) {
	return timedExec(ns, script, "nft", "-f", "-")
}

// timedExec times a command inside ns (iptables-restore, ipset restore).
func timedExec(ns *NetNS, stdin string, args ...string) (time.Duration, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := ns.Start(cmd); err != nil {
		return 0, err
	}
	err := cmd.Wait()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("%s: %w: %.400s", strings.Join(args, " "), err, out.String())
	}
	return d, nil
}
