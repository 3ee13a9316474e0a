// Command nftpolicy is the node agent and what a node or a person reading
// its ruleset needs: cleanup, compile (manifests to nftables text,
// offline), explain (why a flow is allowed or denied) and preview (what a
// change would flip). The lab and the demo are cmd/nftlab's: this binary runs on
// every node and carries no test harness.
package main

import (
	"fmt"
	"os"
)

const usage = `nftpolicy: Kubernetes network policy, compiled to nftables.

Usage:
  nftpolicy agent [--kubeconfig FILE] [--hostname-override NAME] ...  the node agent (the DaemonSet's command; --help lists its flags)
  nftpolicy cleanup [--netns PATH]                     remove everything nftpolicy created on this node (uninstall)
  nftpolicy compile -f FILE|DIR [-f ...] --node NAME   print the ruleset a node would get
  nftpolicy explain (-f FILE|DIR ... | --kubeconfig FILE) --from NS/POD|IP --to NS/POD|IP --port PORT[/PROTO]
                    [--output json] [--node-ruleset]  why a flow is allowed or denied (--help lists the flags)
  nftpolicy preview -f CHANGE (-f CLUSTER ... | --kubeconfig FILE) [--output json]
                                                       the flows a change would allow or deny

The lab and the demo are a command of their own: nftlab run|down|demo.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "agent":
		return agentCmd(args[1:], os.Stderr)
	case "cleanup":
		return cleanupCmd(args[1:], os.Stdout, os.Stderr)
	case "compile":
		return compileCmd(args[1:], os.Stdout, os.Stderr)
	case "explain":
		return explainCmd(args[1:], os.Stdout, os.Stderr)
	case "preview":
		return previewCmd(args[1:], os.Stdout, os.Stderr)
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "nftpolicy: unknown command %q\n\n%s", args[0], usage)
	return 2
}
