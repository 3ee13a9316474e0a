package gen

import (
	"fmt"
	"math/rand/v2"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// EventKind is one kind of change the suite times.
type EventKind string

const (
	PodAdd           EventKind = "pod-add"
	PodDelete        EventKind = "pod-delete"
	PodRelabel       EventKind = "pod-relabel"
	NamespaceRelabel EventKind = "namespace-relabel"
	PolicyAdd        EventKind = "policy-add"
	PolicyUpdate     EventKind = "policy-update"
	PolicyDelete     EventKind = "policy-delete"
)

// EventKinds returns the kinds in their order within a round.
func EventKinds() []EventKind {
	return []EventKind{PodAdd, PodDelete, PodRelabel, NamespaceRelabel, PolicyAdd, PolicyUpdate, PolicyDelete}
}

// Op is what an event does to its object.
type Op int

const (
	Create Op = iota
	Update
	Delete
)

// Event is one change: Object is created, replaced or deleted.
type Event struct {
	Kind   EventKind
	Op     Op
	Object runtime.Object
}

// ModelKey is how model.Cluster.Delete names the event's object.
func (e Event) ModelKey() (kind, namespace, name string) {
	kind, namespace, name, _ = model.RefOf(e.Object)
	return kind, namespace, name
}

// Events returns rounds of events, one of each kind per round in
// EventKinds order, every one touching what node enforces: pods are added
// to, deleted from and relabelled on node; policies added, updated and
// deleted select a pod on node (an update can still change nothing there,
// when an earlier rule allows its new port already: the suite finds such
// events by replaying them). Events apply in order; the cluster itself
// is not changed. The same cluster and arguments give the same events.
func (c *Cluster) Events(node string, rounds int) []Event {
	s := newEventState(c, node)
	var out []Event
	for r := range rounds {
		var added *networkingv1.NetworkPolicy
		for _, kind := range EventKinds() {
			var e Event
			switch kind {
			case PodAdd:
				e = Event{Kind: kind, Op: Create, Object: s.addPod()}
			case PodDelete:
				e = Event{Kind: kind, Op: Delete, Object: s.deletePod()}
			case PodRelabel:
				e = Event{Kind: kind, Op: Update, Object: s.relabelPod()}
			case NamespaceRelabel:
				e = Event{Kind: kind, Op: Update, Object: s.relabelNamespace()}
			case PolicyAdd:
				added = s.addPolicy(r)
				e = Event{Kind: kind, Op: Create, Object: added}
			case PolicyUpdate:
				e = Event{Kind: kind, Op: Update, Object: s.updatePolicy(r)}
			case PolicyDelete:
				delete(s.policies, added.Namespace+"/"+added.Name)
				e = Event{Kind: kind, Op: Delete, Object: added}
			}
			out = append(out, e)
		}
	}
	return out
}

// eventState is the cluster as the events so far have left it.
type eventState struct {
	c          *Cluster
	rng        *rand.Rand
	node       string
	nextPod    int
	namespaces []*v1.Namespace // current versions, by index
	local      []*v1.Pod       // pods on node, current versions
	untouched  []*v1.Pod       // original pods on node no event has used yet
	policies   map[string]*networkingv1.NetworkPolicy
	order      []string // policy keys in generation order
}

func newEventState(c *Cluster, node string) *eventState {
	s := &eventState{
		c:          c,
		rng:        rand.New(rand.NewPCG(c.Seed+1, 0x6576656e7473)), // "events"
		node:       node,
		nextPod:    len(c.Pods),
		namespaces: append([]*v1.Namespace(nil), c.Namespaces...),
		policies:   map[string]*networkingv1.NetworkPolicy{},
	}
	for _, p := range c.Pods {
		if p.Spec.NodeName == node {
			s.local = append(s.local, p)
			s.untouched = append(s.untouched, p)
		}
	}
	for _, p := range c.Policies {
		k := p.Namespace + "/" + p.Name
		s.policies[k] = p
		s.order = append(s.order, k)
	}
	return s
}

func (s *eventState) namespace(name string) *v1.Namespace {
	for _, ns := range s.namespaces {
		if ns.Name == name {
			return ns
		}
	}
	panic("gen: no namespace " + name)
}

// addPod schedules a new replica of a random app onto node.
func (s *eventState) addPod() *v1.Pod {
	ns := s.namespaces[s.rng.IntN(len(s.namespaces))]
	apps := s.c.apps[ns.Name]
	a := apps[s.rng.IntN(len(apps))]
	g := &generator{rng: s.rng, c: s.c, pods: s.nextPod}
	p := g.newPod(ns, a, s.node)
	s.nextPod = g.pods
	s.local = append(s.local, p)
	return p
}

// takeUntouched removes and returns a random original pod on node.
func (s *eventState) takeUntouched() *v1.Pod {
	if len(s.untouched) == 0 {
		panic("gen: more pod events than pods on " + s.node)
	}
	i := s.rng.IntN(len(s.untouched))
	p := s.untouched[i]
	s.untouched = append(s.untouched[:i], s.untouched[i+1:]...)
	return p
}

func (s *eventState) deletePod() *v1.Pod {
	p := s.takeUntouched()
	s.replaceLocal(p, nil)
	return p
}

// relabelPod moves a pod on node to another app of its namespace, as a
// redeploy under a new name would. It picks a move that changes which
// policies select the pod (its class), so the node has something to do.
func (s *eventState) relabelPod() *v1.Pod {
	if len(s.untouched) == 0 {
		panic("gen: more pod events than pods on " + s.node)
	}
	var i int
	var a app
	for attempt := 0; ; attempt++ {
		i = s.rng.IntN(len(s.untouched))
		old := s.untouched[i]
		apps := s.c.apps[old.Namespace]
		a = apps[s.rng.IntN(len(apps))]
		if a.name == old.Labels["app"] {
			continue
		}
		moved := old.DeepCopy()
		moved.Labels = podLabels(s.namespace(old.Namespace), a, old.Labels["version"])
		if s.class(old) != s.class(moved) || attempt >= 100 {
			break
		}
	}
	old := s.untouched[i]
	s.untouched = append(s.untouched[:i], s.untouched[i+1:]...)
	p := old.DeepCopy()
	p.Labels = podLabels(s.namespace(old.Namespace), a, old.Labels["version"])
	s.replaceLocal(old, p)
	return p
}

// class names the policies that select pod, in generation order.
func (s *eventState) class(pod *v1.Pod) string {
	mp := model.PodFromAPI(pod)
	var out string
	for _, k := range s.order {
		np := s.policies[k]
		if np != nil && np.Namespace == pod.Namespace && model.PolicyFromAPI(np).Selects(nil, mp) {
			out += k + ","
		}
	}
	return out
}

func (s *eventState) replaceLocal(old, p *v1.Pod) {
	for i, q := range s.local {
		if q == old {
			if p == nil {
				s.local = append(s.local[:i], s.local[i+1:]...)
			} else {
				s.local[i] = p
			}
			return
		}
	}
}

// relabelNamespace hands a namespace to the platform team or takes it
// back: the monitoring policies' namespace selectors (team=platform) then
// gain or lose all of its pods.
func (s *eventState) relabelNamespace() *v1.Namespace {
	i := s.rng.IntN(len(s.namespaces))
	ns := s.namespaces[i].DeepCopy()
	if ns.Labels["team"] == "platform" {
		ns.Labels["team"] = "data"
	} else {
		ns.Labels["team"] = "platform"
	}
	s.namespaces[i] = ns
	return ns
}

// addPolicy isolates the app of a random pod on node and lets the
// frontend tier reach its metrics and a port range.
func (s *eventState) addPolicy(round int) *networkingv1.NetworkPolicy {
	p := s.local[s.rng.IntN(len(s.local))]
	np := tu.Policy(p.Namespace, fmt.Sprintf("perf-added-%d", round), m{"app": p.Labels["app"]},
		tu.Ingress(peers{tu.PodPeer(m{"tier": "frontend"})}, named(portMetrics), tu.Port(v1.ProtocolTCP, 7000, 7010)))
	s.policies[np.Namespace+"/"+np.Name] = np
	return np
}

// updatePolicy adds a port to the first rule of a random generated allow
// policy that selects a pod on node.
func (s *eventState) updatePolicy(round int) *networkingv1.NetworkPolicy {
	start := s.rng.IntN(len(s.order))
	for j := range s.order {
		k := s.order[(start+j)%len(s.order)]
		np := s.policies[k]
		// allow-dns's peers (kube-system's DNS pods) are not generated: no
		// peer identity holds them, so a change to its rule would change
		// nothing on the node.
		if np == nil || (len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0) || !s.selectsLocal(np) || np.Name == "allow-dns" {
			continue
		}
		np = np.DeepCopy()
		port := tu.Port(v1.ProtocolTCP, int32(10000+round), 0)
		if len(np.Spec.Ingress) > 0 {
			np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, port)
		} else {
			np.Spec.Egress[0].Ports = append(np.Spec.Egress[0].Ports, port)
		}
		s.policies[k] = np
		return np
	}
	panic("gen: no policy selects a pod on " + s.node)
}

func (s *eventState) selectsLocal(np *networkingv1.NetworkPolicy) bool {
	p := model.PolicyFromAPI(np)
	for _, pod := range s.local {
		if p.Selects(nil, model.PodFromAPI(pod)) {
			return true
		}
	}
	return false
}

// Burst returns n new pods spread over every node and namespace, as a
// rollout across the cluster creates them: the suite creates them as fast
// as the API server takes them and times the agent until it has all. Their
// numbers start past any pod Events adds.
func (c *Cluster) Burst(n int) []*v1.Pod {
	rng := rand.New(rand.NewPCG(c.Seed+2, 0x6275727374)) // "burst"
	g := &generator{rng: rng, c: c, pods: len(c.Pods) + 500}
	out := make([]*v1.Pod, n)
	for i := range n {
		ns := c.Namespaces[i%len(c.Namespaces)]
		apps := c.apps[ns.Name]
		out[i] = g.newPod(ns, apps[rng.IntN(len(apps))], c.Nodes[i%len(c.Nodes)].Name)
	}
	return out
}
