package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/nftpolicy/nftpolicy/internal/lab"
)

// demoScenario is found relative to the working directory (make demo runs
// from the repository's root) or to the binary (bin/nftlab).
const demoScenario = "test/scenarios/demo.yaml"

func demoCmd(args []string) int {
	path := demoScenario
	if _, err := os.Stat(path); err != nil {
		if exe, err := os.Executable(); err == nil {
			path = filepath.Join(filepath.Dir(exe), "..", demoScenario)
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nftlab demo: needs root (it creates network namespaces)")
		return 1
	}
	fmt.Printf("Running %s: two nodes as network namespaces, a real agent per node, real packets.\n\n", path)
	return runScenarios([]string{path}, "text", lab.Options{RulesetOf: "node-1"}, os.Stdout, os.Stderr)
}
