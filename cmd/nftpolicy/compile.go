package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// compileCmd prints, in nft syntax, the ruleset the agent would program on
// one node for the objects in the given files, touching no kernel. Files
// are manifests (several documents, or Lists as kubectl get -o yaml prints
// them) or scenario files, which contribute the state after their last step
// (or after --step N) with the addresses the lab gives their nodes and pods.
func compileCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files fileList
	fs.Var(&files, "f", "a manifest or scenario file, or a directory of them (repeatable)")
	node := fs.String("node", "", "the node to compile for")
	stepN := fs.Int("step", 0, "for scenario files: the state after this step (default: after the last)")
	protectNew := fs.Bool("protect-new-pods", true, "as the agent's flag: deny addresses of the node's pod CIDRs that no known pod has")
	verdictLogs := fs.String("verdict-logs", "drops", "as the agent's flag: the verdicts the kernel logs (drops, all, none)")
	logGroup := fs.Uint("verdict-log-group", model.DefaultLogGroup, "as the agent's flag: the NFLOG group")
	ipvs := fs.Bool("ipvs", false, "as the agent's flag when it is true or finds IPVS: the output chains, which judge what IPVS re-sends")
	dnsGroup := fs.Uint("fqdn-log-group", model.DefaultDNSGroup, "as the agent's flag: the NFLOG group of DNS answers (0: none)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(files) == 0 || *node == "" {
		fmt.Fprintln(stderr, "nftpolicy compile: -f FILE|DIR and --node NAME are required")
		return 2
	}
	logs, err := model.ParseLogMode(*verdictLogs)
	if err != nil || *logGroup == 0 || *logGroup > 65535 {
		fmt.Fprintln(stderr, "nftpolicy compile: --verdict-logs drops|all|none and --verdict-log-group 1-65535")
		return 2
	}
	objs, ok := readFiles("compile", files, *stepN, stderr)
	if !ok {
		return 1
	}
	c := newCluster(objs, stderr)
	if _, ok := c.Nodes[*node]; !ok {
		fmt.Fprintf(stderr, "warning: no Node %q among the objects; compiling for the pods that name it\n", *node)
	}
	fmt.Fprint(stdout, compile.NodeWith(c, *node, model.Options{OpenUnknown: !*protectNew, Logs: logs, LogGroup: uint16(*logGroup), DNSGroup: uint16(*dnsGroup), IPVS: *ipvs}).Text())
	return 0
}
