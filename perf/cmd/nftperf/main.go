// Command nftperf runs nftpolicy's performance suite: update latency on the
// control plane and connection rate on the data path, side by side with the
// strategies of its peers, on real kernels in throwaway network namespaces.
// See docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/nftpolicy/nftpolicy/perf/bench"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

const usage = `nftperf: nftpolicy's performance suite (needs root; creates npperf-* and nplab-* namespaces).

Usage:
  nftperf [-sizes S,M,L] [-quick] [-out DIR] [-seed N] [-rounds N] [-datapath=false] [-datapath-size M] [-datapath-base-chains] [-datapath-rules] [-newpod=false] [-kube-router-real]
  nftperf -sizes none -datapath=false -out DIR     only the new-pod measure
  nftperf down      remove the namespaces of runs that died without cleaning up
`

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "nlprobe": // internal: the netlink probe, started by the suite
			seed, err := strconv.ParseUint(arg(4), 10, 64)
			if err != nil {
				exit(err)
			}
			rounds, err := strconv.Atoi(arg(5))
			if err != nil {
				exit(err)
			}
			exit(bench.RunProbe(arg(2), arg(3), seed, rounds))
		case "mem": // internal: the memory measurement, started by the suite
			seed, err := strconv.ParseUint(arg(3), 10, 64)
			if err != nil {
				exit(err)
			}
			exit(bench.RunMemory(arg(2), seed, arg(4)))
		case "down":
			exit(bench.Down())
		}
	}
	os.Exit(run())
}

func arg(i int) string {
	if i < len(os.Args) {
		return os.Args[i]
	}
	return ""
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "nftperf:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func run() int {
	fs := flag.NewFlagSet("nftperf", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	sizes := fs.String("sizes", "S,M,L", "cluster sizes to measure")
	quick := fs.Bool("quick", false, "smoke test: S only, few repetitions, a small data-path run")
	out := fs.String("out", "perf/results", "directory for results.md and results.json")
	seed := fs.Uint64("seed", 1, "cluster generator seed")
	datapath := fs.Bool("datapath", true, "measure the data path")
	dpSize := fs.String("datapath-size", "M", "cluster size whose ruleset the data path loads")
	dpChains := fs.Bool("datapath-base-chains", false, "the data path also with 2 and 4 forward base chains that only accept established flows (what a base chain costs)")
	dpRules := fs.Bool("datapath-rules", false, "the data path also with 10 or 20 rules after the conntrack one that match nothing, state tests or set lookups (what a rule on the first packet's path costs)")
	rounds := fs.Int("rounds", 0, "rounds of events per size (0: 20 at S and M, 10 at L)")
	newPod := fs.Bool("newpod", true, "measure how soon a new pod is reachable (its address existing to reachable where policy allows)")
	fqdn := fs.Bool("fqdn", true, "measure the first-connection race of domainNames policies (a lookup, then a connection at once)")
	tke := fs.Bool("tke", false, "also measure the TKE data path: the real kube-proxy with 1,000 Services and 8,000 pods (builds kube-apiserver and kube-proxy into the cache on first use); -sizes none -datapath=false -tke measures it alone")
	realKR := fs.Bool("kube-router-real", false, "also run the real kube-router (v2.1.0, built by make kube-router) next to nftpolicy's agent on a real API server, measured by packets; -sizes none -datapath=false -newpod=false -kube-router-real measures it alone")
	realKRSizes := fs.String("kube-router-real-sizes", "S,M", "cluster sizes of the real kube-router comparison")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (the agent runs in this process: go tool pprof -focus 'agent.*sync' shows its events)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "nftperf: needs root (network namespaces, nftables)")
		return 2
	}
	cfg := bench.Config{Seed: *seed, Quick: *quick, DataPath: *datapath, DataPathBaseChains: *dpChains, DataPathRules: *dpRules, Rounds: *rounds, TKE: *tke, NewPod: *newPod, FQDN: *fqdn, Log: os.Stderr}
	if *quick {
		*sizes, *dpSize = "S", "S"
	}
	if *sizes == "none" {
		*sizes = ""
	}
	for _, name := range strings.FieldsFunc(*sizes, func(r rune) bool { return r == ',' }) {
		s, err := gen.SizeByName(strings.TrimSpace(name))
		if err != nil {
			fmt.Fprintln(os.Stderr, "nftperf:", err)
			return 2
		}
		cfg.Sizes = append(cfg.Sizes, s)
	}
	if *realKR {
		if *quick {
			*realKRSizes = "S"
		}
		for _, name := range strings.Split(*realKRSizes, ",") {
			s, err := gen.SizeByName(strings.TrimSpace(name))
			if err != nil {
				fmt.Fprintln(os.Stderr, "nftperf:", err)
				return 2
			}
			cfg.RealPeer = append(cfg.RealPeer, s)
		}
	}
	s, err := gen.SizeByName(*dpSize)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nftperf:", err)
		return 2
	}
	cfg.DataPathSize = s

	j, err := bench.NewJanitor()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nftperf:", err)
		return 1
	}
	stop := j.CloseOnSignal()
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGHUP)
	defer cancel()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "nftperf:", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	res, runErr := bench.Run(ctx, cfg, j)
	stop()
	if err := j.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "nftperf: cleanup:", err)
	}
	if err := bench.Write(*out, res); err != nil {
		fmt.Fprintln(os.Stderr, "nftperf:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "nftperf: wrote %s/results.md and results.json\n", *out)
	for _, t := range res.Targets {
		fmt.Fprintf(os.Stderr, "  %-12s %s: %s\n", t.Status, t.Goal, t.Measured)
	}
	if runErr != nil {
		fmt.Fprintln(os.Stderr, "nftperf:", runErr)
		return 1
	}
	return 0
}
