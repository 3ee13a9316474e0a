// Command nftlab is the test harness around nftpolicy: it runs scenario
// files on real network namespaces with real agents, and the demo. It is a
// command of its own so that the agent's binary, which runs on every node,
// links none of it (cmd/nftpolicy's TestNoHarnessInTheAgent checks).
package main

import (
	"fmt"
	"os"
)

const usage = `nftlab: nftpolicy's lab: scenarios on real network namespaces, real agents, real packets.

Usage:
  nftlab run [--output json] [--keep] [--apiserver] FILE|DIR ...  run scenarios on real namespaces
  nftlab down                                   remove whatever a lab run left behind
  nftlab demo                                   a two-node lab, its matrices and a ruleset
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
	case "run":
		return labRun(args[1:], os.Stdout, os.Stderr)
	case "down":
		return labDown()
	case "demo":
		return demoCmd(args[1:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "nftlab: unknown command %q\n\n%s", args[0], usage)
	return 2
}
