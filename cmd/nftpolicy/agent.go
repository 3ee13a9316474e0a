package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/featuregate"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	policyclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// featureAdminNetworkPolicy gates watching (and so enforcing) the
// network-policy-api kinds.
const featureAdminNetworkPolicy featuregate.Feature = "AdminNetworkPolicy"

// agentOptions are the agent command's flags.
type agentOptions struct {
	kubeconfig    string
	hostname      string
	metricsAddr   string
	minSyncPeriod time.Duration
	resyncPeriod  time.Duration
	netns         string
	cutDenied     bool
	repairTamper  bool
	protectNew    bool
	verdictLogs   string
	ipvs          string
	logGroup      uint16
	logRate       float64
	countersEvery time.Duration
	dnsGroup      uint16
	dnsMinTTL     time.Duration
	dnsMaxTTL     time.Duration
	dnsMax        int
	clusterID     string
	sameness      bool
	remotes       []string
	remotesDir    string
	remoteCheck   time.Duration
	logging       *logsapi.LoggingConfiguration
	features      featuregate.MutableVersionedFeatureGate
}

func newAgentFlags(stderr io.Writer) (*pflag.FlagSet, *agentOptions, error) {
	o := &agentOptions{logging: logsapi.NewLoggingConfiguration(), features: featuregate.NewFeatureGate()}
	if err := logsapi.AddFeatureGates(o.features); err != nil {
		return nil, nil, err
	}
	if err := o.features.Add(map[featuregate.Feature]featuregate.FeatureSpec{
		featureAdminNetworkPolicy: {Default: true, PreRelease: featuregate.Alpha},
	}); err != nil {
		return nil, nil, err
	}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty: the in-cluster config (the pod's service account)")
	fs.StringVar(&o.hostname, "hostname-override", "", "this node's name; default: $NODE_NAME, else the hostname")
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":9080", "address of /metrics, /healthz and /readyz; empty disables them")
	fs.DurationVar(&o.minSyncPeriod, "min-sync-period", time.Second, "minimum time between two syncs: bursts of changes within it are coalesced into one transaction")
	fs.DurationVar(&o.resyncPeriod, "resync-period", time.Minute, "period of the full resync that reads the kernel's table back and repairs drift")
	fs.StringVar(&o.netns, "netns", "", "program the nftables of this network namespace (a path such as /run/netns/NAME) instead of the agent's own; for tests and the lab")
	fs.BoolVar(&o.cutDenied, "cut-denied-flows", true, "after a change, delete the conntrack entries of established connections the new policy denies (otherwise they live on until they end)")
	fs.BoolVar(&o.repairTamper, "repair-tampering", true, "watch nftables events and repair any change to the table made by someone else at once (otherwise it waits for the periodic resync)")
	fs.BoolVar(&o.protectNew, "protect-new-pods", true, "deny the addresses of this node's pod CIDRs (Node.spec.podCIDRs) that no pod the agent knows has: a new pod is closed until its policies are programmed (otherwise it is open until then)")
	fs.StringVar(&o.ipvs, "ipvs", "auto", "judge the connections IPVS (kube-proxy or kube-router in IPVS mode) re-sends to this node's pods, in chains on the output hook: true, false, or auto (when the ip_vs module is loaded or kube-ipvs0 exists, looked for every 10 s until found)")
	fs.StringVar(&o.verdictLogs, "verdict-logs", "drops", "verdicts the kernel copies to the NFLOG group and the agent logs, one line each: drops (and audit policies' would-drops), all (also accepts) or none")
	fs.Uint16Var(&o.logGroup, "verdict-log-group", model.DefaultLogGroup, "NFLOG group of the verdict logs (1-65535)")
	fs.Float64Var(&o.logRate, "verdict-log-rate", 50, "most verdict lines per second the agent writes (burst twice that); the kernel also limits each logged rule to 10 copies per second")
	fs.DurationVar(&o.countersEvery, "policy-counters-interval", 30*time.Second, "period of reading the rules' counters into nftpolicy_policy_packets_total; 0 disables")
	fs.Uint16Var(&o.dnsGroup, "fqdn-log-group", model.DefaultDNSGroup, "NFLOG group the kernel copies the DNS answers of domainNames policies' subjects to, for the agent to learn names' addresses; 0: none (domainNames peers then match nothing)")
	fs.DurationVar(&o.dnsMinTTL, "fqdn-min-ttl", 30*time.Second, "shortest time a learned name-to-address binding is kept, whatever its record's TTL (short TTLs would otherwise flap between a client's lookups)")
	fs.DurationVar(&o.dnsMaxTTL, "fqdn-max-ttl", time.Hour, "longest time a learned binding is kept without a new answer, whatever its record's TTL")
	fs.IntVar(&o.dnsMax, "fqdn-max-bindings", 65536, "most learned bindings kept on the node; answers beyond it are not learned (nftpolicy_dns_bindings_dropped_total)")
	fs.StringVar(&o.clusterID, "cluster-id", os.Getenv("NFTPOLICY_CLUSTER_ID"), "(default $NFTPOLICY_CLUSTER_ID) this cluster's id in its ClusterSet: local namespaces and nodes without the label "+model.ClusterLabel+" are treated as labelled with it (docs/multicluster.md)")
	fs.BoolVar(&o.sameness, "remote-namespace-sameness", false, "every peer namespace selector also matches remote clusters' namespaces (default: only selectors that name the label "+model.ClusterLabel+")")
	fs.StringArrayVar(&o.remotes, "remote-kubeconfig", nil, "NAME=PATH: watch the pods, namespaces and nodes of remote cluster NAME (read-only, with the kubeconfig at PATH) as peers; repeatable")
	fs.DurationVar(&o.remoteCheck, "remote-check-interval", 10*time.Second, "period of the check of each remote cluster's API server (nftpolicy_remote_cluster_up)")
	fs.StringVar(&o.remotesDir, "remote-kubeconfig-dir", "", "a directory of kubeconfig files, one per remote cluster, each named by its cluster's id (a mounted Secret)")
	o.features.AddFlag(fs)
	logsapi.AddFlags(o.logging, fs)
	return fs, o, nil
}

func agentCmd(args []string, stderr io.Writer) int {
	fs, o, err := newAgentFlags(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "nftpolicy agent:", err)
		return 1
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := logsapi.ValidateAndApply(o.logging, o.features); err != nil {
		fmt.Fprintln(stderr, "nftpolicy agent:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := klog.Background().WithName("agent")
	ctx = klog.NewContext(ctx, logger)
	if err := runAgent(ctx, o); err != nil {
		logger.Error(err, "Agent failed")
		klog.Flush()
		return 1
	}
	klog.Flush()
	return 0
}

func runAgent(ctx context.Context, o *agentOptions) error {
	logger := klog.FromContext(ctx)
	node := o.hostname
	if node == "" {
		var err error
		if node, err = nodeNameDefault(); err != nil {
			return fmt.Errorf("--hostname-override: %w", err)
		}
	}
	cfg, err := restConfig(o.kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "nftpolicy-agent/" + node
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	kernelFD := -1
	if o.netns != "" {
		f, err := os.Open(o.netns)
		if err != nil {
			return fmt.Errorf("--netns: %w", err)
		}
		defer f.Close()
		kernelFD = int(f.Fd())
	}

	logs, err := model.ParseLogMode(o.verdictLogs)
	if err != nil {
		return fmt.Errorf("--verdict-logs: %w", err)
	}
	if o.logGroup == 0 {
		return fmt.Errorf("--verdict-log-group: 0 is not a group the agent can use")
	}
	rks, err := remoteKubeconfigs(o.remotes, o.remotesDir, o.clusterID)
	if err != nil {
		return err
	}
	remotes, err := remoteClients(rks, cfg.UserAgent)
	if err != nil {
		return err
	}
	kernel := nft.NewNetlink(kernelFD)
	defer kernel.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	acfg := agent.Config{
		NodeName:            node,
		Kernel:              kernel,
		MinSyncInterval:     o.minSyncPeriod,
		ResyncInterval:      o.resyncPeriod,
		Metrics:             agent.NewMetrics(reg),
		Model:               model.Options{OpenUnknown: !o.protectNew, Logs: logs, LogGroup: o.logGroup, DNSGroup: o.dnsGroup},
		LogLinesPerSecond:   o.logRate,
		DNSMinTTL:           o.dnsMinTTL,
		DNSMaxTTL:           o.dnsMaxTTL,
		DNSMaxBindings:      o.dnsMax,
		Remotes:             remotes,
		RemoteCheckInterval: o.remoteCheck,
		ClusterSet:          model.ClusterSet{LocalID: o.clusterID, Sameness: o.sameness},
	}
	switch o.ipvs {
	case "true":
		acfg.Model.IPVS = true
	case "false":
	case "auto":
		acfg.IPVSDetect = func() bool { return agent.DetectIPVS(kernelFD) }
	default:
		return fmt.Errorf("--ipvs: %q is not true, false or auto", o.ipvs)
	}
	if o.dnsGroup != 0 {
		if o.dnsGroup == o.logGroup {
			return fmt.Errorf("--fqdn-log-group and --verdict-log-group must differ")
		}
		acfg.DNSAnswers = func(ctx context.Context, group uint16, copyBytes uint32, fn func(nft.LogEvent)) error {
			return nft.ReadPackets(ctx, kernelFD, group, copyBytes, fn)
		}
	}
	if logs != model.LogNone {
		acfg.Logs = func(ctx context.Context, group uint16, fn func(nft.LogEvent)) error {
			return nft.ReadLogs(ctx, kernelFD, group, fn)
		}
	}
	if o.countersEvery > 0 {
		acfg.Counters, acfg.CountersInterval = kernel, o.countersEvery
	}
	if o.cutDenied {
		acfg.Conntrack = conntrack.NewNetlink(kernelFD)
	}
	if o.repairTamper {
		acfg.Tamper = nft.NewMonitor(kernelFD, kernel.SentFrom)
	}
	if o.features.Enabled(featureAdminNetworkPolicy) {
		kinds, err := installedAdminKinds(ctx, client.Discovery())
		if err != nil {
			return err
		}
		if len(kinds) > 0 {
			pc, err := policyclient.NewForConfig(cfg)
			if err != nil {
				return err
			}
			acfg.PolicyClient, acfg.AdminKinds = pc, kinds
		}
		watched := map[string]string{}
		for k, r := range kinds {
			watched[k] = r.GroupVersion().String()
		}
		logger.Info("Admin network policy kinds", "watched", watched)
	}
	// Secondary networks (docs/multinetwork.md): watched when the
	// MultiNetworkPolicy CRD is installed.
	if netKinds, err := installedNetworkKinds(ctx, client.Discovery()); err != nil {
		return err
	} else if slices.Contains(netKinds, model.KindMNP) {
		dc, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return err
		}
		acfg.Dynamic, acfg.DynamicKinds = dc, netKinds
		acfg.NetworkKernel = func(table string) nft.Kernel { return nft.NewNetlinkTable(kernelFD, table) }
		acfg.ListNetworkTables = func(ctx context.Context) ([]string, error) {
			return nft.ListTables(ctx, kernelFD, nft.NetworkTablePrefix)
		}
		logger.Info("Secondary networks enforced", "watched", netKinds)
	} else {
		logger.Info("The MultiNetworkPolicy CRD is not installed: secondary networks are not enforced")
	}
	a := agent.New(acfg, client)

	if o.metricsAddr != "" {
		srv, err := serveMetrics(o.metricsAddr, reg, a)
		if err != nil {
			return err
		}
		defer srv.Close()
		logger.Info("Serving metrics", "address", srv.Addr)
	}
	logger.Info("Starting", "node", node, "minSyncPeriod", o.minSyncPeriod, "resyncPeriod", o.resyncPeriod, "netns", o.netns, "cutDeniedFlows", o.cutDenied, "repairTampering", o.repairTamper, "protectNewPods", o.protectNew, "ipvs", o.ipvs, "verdictLogs", o.verdictLogs, "policyCountersInterval", o.countersEvery, "clusterID", o.clusterID, "remoteClusters", len(remotes), "remoteNamespaceSameness", o.sameness)
	err = a.Run(ctx)
	if ctx.Err() != nil {
		// Shutdown: the rules stay in the kernel for the next agent.
		logger.Info("Stopped; the rules stay in place for the next agent")
		return nil
	}
	return err
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig and not in a cluster: %w", err)
	}
	return cfg, nil
}

// installedAdminKinds asks the API server which network-policy-api kinds
// it serves, and at which version: an informer for a kind whose CRD is
// absent would never sync. A kind served at a newer version of its kinds
// table entry is watched there (ClusterNetworkPolicy as v1beta1 where
// network-policy-api v0.3.0's CRD is installed, else as v1alpha2). CRDs
// installed later are picked up by the next start of the agent.
func installedAdminKinds(ctx context.Context, d discovery.DiscoveryInterface) (map[string]schema.GroupVersionResource, error) {
	served := map[schema.GroupVersion][]metav1.APIResource{}
	serves := func(r schema.GroupVersionResource) (bool, error) {
		gv := r.GroupVersion()
		rs, asked := served[gv]
		if !asked {
			rl, err := d.ServerResourcesForGroupVersion(gv.String())
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return false, fmt.Errorf("discovering %s: %w", gv, err)
			default:
				rs = rl.APIResources
			}
			served[gv] = rs
		}
		return slices.ContainsFunc(rs, func(a metav1.APIResource) bool { return a.Name == r.Resource }), nil
	}
	kinds := map[string]schema.GroupVersionResource{}
	for _, k := range model.Kinds() {
		if !k.Tier {
			continue
		}
		for _, r := range append(slices.Clone(k.Newer), k.Resource) {
			ok, err := serves(r)
			if err != nil {
				return nil, err
			}
			if ok {
				kinds[k.Name] = r
				break
			}
		}
	}
	return kinds, ctx.Err()
}

// installedNetworkKinds asks the API server which of the secondary
// networks' kinds (MultiNetworkPolicy, NetworkAttachmentDefinition) it
// serves, as installedAdminKinds does for the admin kinds.
func installedNetworkKinds(ctx context.Context, d discovery.DiscoveryInterface) ([]string, error) {
	var kinds []string
	for _, k := range model.Kinds() {
		if !k.Dynamic {
			continue
		}
		rl, err := d.ServerResourcesForGroupVersion(k.Resource.GroupVersion().String())
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("discovering %s: %w", k.Resource.GroupVersion(), err)
		}
		for _, r := range rl.APIResources {
			if r.Kind == k.Name && r.Name == k.Resource.Resource {
				kinds = append(kinds, k.Name)
			}
		}
	}
	return kinds, ctx.Err()
}

// serveMetrics serves /metrics, /healthz (the process is up and serving)
// and /readyz (the first sync has succeeded) on addr.
func serveMetrics(addr string, reg *prometheus.Registry, a *agent.Agent) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Ready() {
			http.Error(w, "not ready: the first sync has not succeeded yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-bind-address: %w", err)
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}
