package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/fakeapi"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// clusterSet runs a file with clusters (docs/multicluster.md): each
// cluster is a run with its own fake API server and its agents, all on one
// lab whose fabric routes every cluster's pods (one flat network). Every
// agent watches the other clusters' API servers as remotes, each through
// a client of its own that a disconnect step cuts.
type clusterSet struct {
	sc      *scenario.Scenario
	members []*run
	byName  map[string]*run
	// readers are, by cluster, the outages of the other clusters' clients
	// of its API server; frozen, by disconnected cluster, the versions of
	// its objects the others last saw (what their barrier expects).
	readers map[string][]interface{ SetDown(bool) }
	frozen  map[string]map[string]string
}

func runClusterSet(ctx context.Context, sc *scenario.Scenario, opts Options) (res Result) {
	net := netlab.New("")
	res = Result{Report: scenario.Report{Scenario: sc.Name, File: sc.File}, Prefix: net.Prefix()}
	if opts.Server != nil || opts.RulesetOf != "" {
		res.Report.Errors = append(res.Report.Errors, "a file with clusters runs on fake API servers or on Options.Servers (one per cluster), and names no one node's ruleset")
		return res
	}
	if opts.Log != nil {
		fmt.Fprintf(opts.Log, "lab %s: network namespaces %s*\n", sc.Name, net.Prefix())
	}
	stopSignals := netlab.CleanupOnSignal(net)
	defer stopSignals()
	ctx, cancel := context.WithCancel(ctx)
	var agents sync.WaitGroup
	defer func() {
		cancel()
		agents.Wait()
		if opts.Keep {
			res.KeptPrefix = net.Prefix()
			return
		}
		if err := net.Close(); err != nil {
			res.Report.Errors = append(res.Report.Errors, "cleanup: "+err.Error())
		}
	}()
	cs, err := newClusterSet(sc, opts, net)
	if err == nil {
		defer cs.cleanup(&res.Report)
		err = cs.start(ctx, &agents)
	}
	if err != nil {
		res.Report.Errors = append(res.Report.Errors, err.Error())
		return res
	}
	for i := range sc.Steps {
		cs.step(ctx, i, &res.Report)
	}
	return res
}

func newClusterSet(sc *scenario.Scenario, opts Options, net *netlab.Lab) (*clusterSet, error) {
	cs := &clusterSet{sc: sc, byName: map[string]*run{}, readers: map[string][]interface{ SetDown(bool) }{}, frozen: map[string]map[string]string{}}
	for _, m := range sc.Members {
		msc := &scenario.Scenario{Cluster: m}
		for _, st := range m.Steps {
			msc.Steps = append(msc.Steps, scenario.Step{Number: st.Number, Line: st.Line, Note: st.Note, Apply: st.Apply, Delete: st.Delete})
		}
		mopts := opts
		mopts.Server = opts.Servers[m.Name]
		r := newRun(msc, mopts)
		r.net, r.cluster, r.ports = net, m.Name, sc.ProbedPorts()
		cs.members = append(cs.members, r)
		cs.byName[m.Name] = r
	}
	for _, r := range cs.members {
		var remotes []agent.Remote
		for _, o := range cs.members {
			if o == r {
				continue
			}
			client, outage, err := o.remoteReader()
			if err != nil {
				return nil, fmt.Errorf("cluster %s: %w", o.cluster, err)
			}
			remotes = append(remotes, agent.Remote{Name: o.cluster, Client: client})
			cs.readers[o.cluster] = append(cs.readers[o.cluster], outage)
		}
		r.agentConfig = func(cfg *agent.Config) {
			cfg.Remotes = remotes
			cfg.ClusterSet = model.ClusterSet{LocalID: r.cluster, Sameness: sc.NamespaceSameness}
			cfg.RemoteCheckInterval = time.Second
		}
		r.remoteWant = func(ctx context.Context) (map[string]string, error) {
			want := map[string]string{}
			for _, o := range cs.members {
				switch {
				case o == r:
				case cs.frozen[o.cluster] != nil:
					maps.Copy(want, cs.frozen[o.cluster])
				default:
					seen, err := o.seenRemotely(ctx)
					if err != nil {
						return nil, err
					}
					maps.Copy(want, seen)
				}
			}
			return want, nil
		}
	}
	return cs, nil
}

// remoteReader is a client of this cluster's API server for another
// cluster's agents, which a disconnect cuts: over the fake's objects, or
// a real server's reader account through a dialer that can be cut.
func (r *run) remoteReader() (kubernetes.Interface, interface{ SetDown(bool) }, error) {
	switch be := r.be.(type) {
	case *fakeBackend:
		c, o := fakeapi.NewReader(be.client.Tracker())
		return c, o, nil
	case *serverBackend:
		srv := r.opts.Server
		if srv.Remote == nil {
			return nil, nil, errors.New("the server has no remote reader's credentials (Server.Remote)")
		}
		cfg := rest.CopyConfig(srv.Remote)
		d := &cutDial{dial: cfg.Dial}
		cfg.Dial = d.DialContext
		c, err := kubernetes.NewForConfig(cfg)
		return c, d, err
	}
	return nil, nil, fmt.Errorf("no remote reader for %T", r.be)
}

// seenRemotely is what the other clusters' agents hold of this cluster's
// objects when they are up to date: its namespaces, nodes and pods under
// their remote names, at their versions (a real server's own namespaces
// included).
func (r *run) seenRemotely(ctx context.Context) (map[string]string, error) {
	var objs []runtime.Object
	if sb, ok := r.be.(*serverBackend); ok {
		var err error
		if objs, err = sb.peers(ctx); err != nil {
			return nil, err
		}
	} else {
		for _, obj := range r.state {
			objs = append(objs, obj)
		}
	}
	want := map[string]string{}
	transform := agent.RemoteTransform(r.cluster)
	for _, obj := range objs {
		switch obj.(type) {
		case *corev1.Namespace, *corev1.Node, *corev1.Pod:
			seen, err := transform(obj.DeepCopyObject())
			if err == nil {
				want[agent.ObjectKey(seen)] = obj.(metav1.Object).GetResourceVersion()
			}
		}
	}
	return want, nil
}

// cleanup removes each cluster's objects from its real server, if any.
func (cs *clusterSet) cleanup(rep *scenario.Report) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, r := range cs.members {
		if err := r.be.cleanup(ctx, r.state); err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("cleanup of cluster %s: %v", r.cluster, err))
		}
	}
}

// cutDial dials as dial (net.Dialer's when nil) until cut: then dials
// fail and the connections it made are closed, as when a real API server
// becomes unreachable for one client.
type cutDial struct {
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func (d *cutDial) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down {
		return nil, fmt.Errorf("dial %s: the lab has disconnected this cluster", addr)
	}
	dial := d.dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	c, err := dial(ctx, network, addr)
	if err == nil {
		d.conns = append(d.conns, c)
	}
	return c, err
}

func (d *cutDial) SetDown(down bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.down = down
	if down {
		for _, c := range d.conns {
			c.Close()
		}
		d.conns = nil
	}
}

// start sets every cluster up, then waits for every agent to have the
// objects of every cluster.
func (cs *clusterSet) start(ctx context.Context, agents *sync.WaitGroup) error {
	for _, r := range cs.members {
		if err := r.setup(ctx, agents); err != nil {
			return fmt.Errorf("cluster %s: %w", r.cluster, err)
		}
	}
	if err := cs.barrier(ctx); err != nil {
		return fmt.Errorf("waiting for the agents' first sync: %w", err)
	}
	return nil
}

func (cs *clusterSet) barrier(ctx context.Context) error {
	var errs []error
	for _, r := range cs.members {
		if err := r.barrier(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", r.cluster, err))
		}
	}
	return errors.Join(errs...)
}

// step runs step i: disconnects, each cluster's applies and deletes,
// reconnects, the barrier, the probe.
func (cs *clusterSet) step(ctx context.Context, i int, rep *scenario.Report) {
	st := &cs.sc.Steps[i]
	fail := func(err error) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: step %d (line %d): %v", cs.sc.File, st.Number, st.Line, err))
	}
	changed := len(st.Disconnect) > 0 || len(st.Reconnect) > 0
	for _, c := range st.Disconnect {
		seen, err := cs.byName[c].seenRemotely(ctx)
		if err != nil {
			fail(err)
		}
		cs.frozen[c] = seen
		for _, o := range cs.readers[c] {
			o.SetDown(true)
		}
	}
	for _, r := range cs.members {
		if r.change(ctx, &r.sc.Steps[i], fail) {
			changed = true
		}
	}
	for _, c := range st.Reconnect {
		delete(cs.frozen, c)
		for _, o := range cs.readers[c] {
			o.SetDown(false)
		}
	}
	if changed {
		if err := cs.barrier(ctx); err != nil {
			fail(err)
			return
		}
	}
	if st.Probe == nil {
		return
	}
	var eps []scenario.Endpoint
	for _, r := range cs.members {
		eps = append(eps, scenario.InCluster(r.cluster, r.endpoints(st.Number))...)
	}
	podOf := func(e scenario.Endpoint) *corev1.Pod {
		pod, _ := cs.byName[e.Cluster].state[scenario.ObjectRef{Kind: "Pod", Namespace: e.Namespace, Name: e.Name}].(*corev1.Pod)
		return pod
	}
	labID := func(e scenario.Endpoint) string {
		r := cs.byName[e.Cluster]
		if e.Kind == scenario.KindNode {
			return "node/" + r.qualify(e.Name)
		}
		return r.qualify(e.Namespace + "/" + e.Name)
	}
	for _, fam := range cs.sc.ProbeFamilies(st.Probe) {
		pr, err := cs.members[0].probeAmong(ctx, st, fam, eps, podOf, labID)
		if err != nil {
			fail(err)
		}
		rep.Probes = append(rep.Probes, pr)
	}
}
