package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nftpolicy/nftpolicy/internal/integration"
	"github.com/nftpolicy/nftpolicy/internal/lab"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// labDown removes the namespaces of lab runs that are gone (killed ones
// included), and leaves those of runs still going.
func labDown() int {
	removed, err := netlab.Down()
	for _, n := range removed {
		fmt.Println("removed", n)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nftlab down:", err)
		return 1
	}
	return 0
}

func labRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	output := fs.String("output", "text", "text or json")
	keep := fs.Bool("keep", false, "leave the lab up after the run and print how to enter it")
	timeout := fs.Duration("probe-timeout", 0, "how long a probe waits before it counts as dropped (default 1s)")
	apiserver := fs.Bool("apiserver", false, "run against a real kube-apiserver and etcd on 127.0.0.1 (built with go into the cache on first use) instead of a fake clientset")
	deployDir := fs.String("deploy", "", "with --apiserver, and for scenarios with Services: the manifests (CRDs, RBAC) to create first (default: deploy/ of the source tree around the working directory)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "nftlab run: name scenario files or directories")
		return 2
	}
	if *output != scenario.OutputText && *output != scenario.OutputJSON {
		fmt.Fprintf(stderr, "nftlab run: --output %s: want %s or %s\n", *output, scenario.OutputText, scenario.OutputJSON)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "nftlab run: needs root (it creates network namespaces)")
		return 1
	}
	opts := lab.Options{Keep: *keep, ProbeTimeout: *timeout, Log: stderr, DeployDir: *deployDir}
	if *apiserver {
		dir := *deployDir
		if dir == "" {
			if dir = integration.FindDeployDir(); dir == "" {
				fmt.Fprintln(stderr, "nftlab run: --apiserver needs deploy/'s manifests: run it inside the source tree or name them with --deploy")
				return 2
			}
		}
		env, err := integration.NewLabEnv(context.Background(), stderr, dir)
		if err != nil {
			fmt.Fprintln(stderr, "nftlab run: starting the API server:", err)
			return 1
		}
		defer env.Close()
		if opts.Server, err = lab.ServerFor(env); err != nil {
			fmt.Fprintln(stderr, "nftlab run:", err)
			return 1
		}
	}
	return runScenarios(fs.Args(), *output, opts, stdout, stderr)
}

// runScenarios loads and runs scenarios, prints their reports and the
// summary line, and returns 1 on any failure.
func runScenarios(paths []string, output string, opts lab.Options, stdout, stderr io.Writer) int {
	scenarios, err := scenario.LoadAll(paths...)
	var reports []scenario.Report
	if err != nil {
		// Files that do not load are failures, reported like the others.
		reports = append(reports, scenario.Report{Scenario: "(loading)", Errors: []string{err.Error()}})
	}
	var rulesets []string
	for _, sc := range scenarios {
		res := lab.Run(context.Background(), sc, opts)
		if res.Ruleset != "" {
			rulesets = append(rulesets, fmt.Sprintf("The ruleset of %s after %s (nft list table inet nftpolicy):\n\n%s\n", opts.RulesetOf, sc.Name, res.Ruleset))
		}
		if res.KeptPrefix != "" {
			fmt.Fprintf(stderr, "lab %q kept: its namespaces start with %s (ip netns list; enter one with ip netns exec NAME bash); remove it with `nftlab down`\n", sc.Name, res.KeptPrefix)
		}
		reports = append(reports, res.Report)
	}
	if output == scenario.OutputText {
		for _, rs := range rulesets {
			fmt.Fprint(stdout, rs)
		}
	}
	if err := scenario.WriteOutput(stdout, stderr, output, reports); err != nil {
		fmt.Fprintln(stderr, "nftlab run:", err)
		return 1
	}
	if !scenario.Summarize(reports...).OK() {
		return 1
	}
	return 0
}
