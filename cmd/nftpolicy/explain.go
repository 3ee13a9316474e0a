package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/explain"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// clusterFlags are how explain and preview are told where the cluster is:
// files, or a live cluster's API.
type clusterFlags struct {
	files      fileList
	step       int
	kubeconfig string
}

func (cf *clusterFlags) register(fs *flag.FlagSet, filesUsage string) {
	fs.Var(&cf.files, "f", filesUsage)
	fs.IntVar(&cf.step, "step", 0, "for scenario files: the state after this step (default: after the last)")
	fs.StringVar(&cf.kubeconfig, "kubeconfig", "", "read the cluster from the API server of this kubeconfig (\"in-cluster\": the pod's service account) instead of files")
}

// objects reads the cluster: from files, or from the API server. The
// error has been printed when ok is false.
func (cf *clusterFlags) objects(ctx context.Context, cmd string, files []string, stderr io.Writer) ([]sourced, bool) {
	if cf.kubeconfig == "" {
		return readFiles(cmd, files, cf.step, stderr)
	}
	kc := cf.kubeconfig
	if kc == "in-cluster" {
		kc = ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	objs, err := liveObjects(ctx, kc)
	if err != nil {
		fmt.Fprintf(stderr, "nftpolicy %s: %v\n", cmd, err)
		return nil, false
	}
	return objs, true
}

// explainCmd answers "why is this flow allowed or denied?". Exit status:
// 0 with an answer (whatever the verdict), 1 when the cluster or the
// kernel could not be read, 2 for a malformed question or an endpoint that
// does not exist.
func explainCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clusterFlags
	cf.register(fs, "a manifest or scenario file, or a directory of them (repeatable)")
	from := fs.String("from", "", "the source: namespace/pod or an IP address")
	to := fs.String("to", "", "the destination: namespace/pod or an IP address")
	port := fs.String("port", "", "the destination port: PORT[/tcp|udp|sctp] (default tcp)")
	output := fs.String("output", "text", "text or json")
	nodeRuleset := fs.Bool("node-ruleset", false, "also read this node's nftpolicy table from the kernel, trace the flow through it and report any disagreement with the model (drift); needs CAP_NET_ADMIN")
	nodeName := fs.String("node", "", "with --node-ruleset: this node's name (default: $NODE_NAME, else the hostname)")
	netns := fs.String("netns", "", "with --node-ruleset: read the table of this network namespace (a path such as /run/netns/NAME) instead of this process's")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *from == "" || *to == "" || *port == "" || (len(cf.files) == 0) == (cf.kubeconfig == "") ||
		(*output != "text" && *output != "json") {
		fmt.Fprintln(stderr, "usage: nftpolicy explain (-f FILE|DIR ... | --kubeconfig FILE) --from NS/POD|IP --to NS/POD|IP --port PORT[/PROTO] [--output text|json] [--node-ruleset [--node NAME]]")
		return 2
	}
	proto, portNum, err := explain.ParsePort(*port)
	if err != nil {
		fmt.Fprintln(stderr, "nftpolicy explain:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	objs, ok := cf.objects(ctx, "explain", cf.files, stderr)
	if !ok {
		return 1
	}
	x := explain.New(newCluster(objs, stderr))
	q := explain.Question{From: *from, To: *to, Proto: proto, Port: portNum}
	r, err := x.Explain(q)
	if err != nil {
		// A pod that does not exist (explain.ErrNoEndpoint), a malformed
		// endpoint, or two endpoints with no IP family in common.
		fmt.Fprintln(stderr, "nftpolicy explain:", err)
		return 2
	}
	if *nodeRuleset {
		node := *nodeName
		if node == "" {
			if node, err = nodeNameDefault(); err != nil {
				fmt.Fprintln(stderr, "nftpolicy explain: --node:", err)
				return 2
			}
		}
		kernel, err := readKernel(ctx, *netns)
		if err != nil {
			fmt.Fprintln(stderr, "nftpolicy explain: reading the kernel's table:", err)
			return 1
		}
		if r.Node, err = x.CheckNode(q, node, kernel); err != nil {
			fmt.Fprintln(stderr, "nftpolicy explain:", err)
			return 1
		}
	}
	if *output == "json" {
		if err := r.WriteJSON(stdout); err != nil {
			return 1
		}
		return 0
	}
	r.WriteText(stdout)
	return 0
}

// readKernel reads the nftpolicy table (nil when there is none) of this
// process's network namespace, or of the one at netns.
func readKernel(ctx context.Context, netns string) (*nft.Ruleset, error) {
	fd := -1
	if netns != "" {
		f, err := os.Open(netns)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		fd = int(f.Fd())
	}
	k := nft.NewNetlink(fd)
	defer k.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return k.Dump(ctx)
}

// nodeNameDefault is the agent's rule for its node's name when no flag
// gives it: $NODE_NAME, else the hostname.
func nodeNameDefault() (string, error) {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("no node name: set it by flag or NODE_NAME: %w", err)
	}
	return h, nil
}
