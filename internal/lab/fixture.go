package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Fixture is a lab driven by code rather than by a scenario file, for tests
// and measurements that need to act between the steps a file can express
// (say, a pod's address existing before its Pod object): lab nodes, a fake
// API server, and a real agent per node on the code path a cluster uses.
type Fixture struct {
	Net    *netlab.Lab
	Client *fake.Clientset
	Agents map[string]*agent.Agent

	objects map[string]runtime.Object // by agent.ObjectKey: what the barrier waits for
	rv      int
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
}

// NewFixture makes an empty fixture; Close removes whatever it built.
func NewFixture() *Fixture {
	return &Fixture{Net: netlab.New(""), Client: fake.NewClientset(), Agents: map[string]*agent.Agent{},
		objects: map[string]runtime.Object{}, errs: make(chan error, 16)}
}

// AddNode makes a lab node and its Node object, with the addresses the lab
// picks and podCIDRs (none: no pod of the node is protected before the
// agent knows it).
func (f *Fixture) AddNode(name string, podCIDRs ...netip.Prefix) error {
	if err := f.Net.AddNode(name, nil); err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, a := range f.Net.Addrs("node/" + name) {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
	}
	for _, p := range podCIDRs {
		node.Spec.PodCIDRs = append(node.Spec.PodCIDRs, p.String())
	}
	if len(podCIDRs) > 0 {
		node.Spec.PodCIDR = node.Spec.PodCIDRs[0]
	}
	return f.Create(node)
}

// Create sends a new object to the API server, with the next resource
// version, and records it for Barrier.
func (f *Fixture) Create(obj runtime.Object) error {
	f.rv++
	obj.(metav1.Object).SetResourceVersion(strconv.Itoa(f.rv))
	k, ok := model.KindOf(obj)
	if !ok || k.Tier {
		return fmt.Errorf("lab fixture: kind %T", obj)
	}
	err := f.Client.Tracker().Create(k.Resource, obj, obj.(metav1.Object).GetNamespace(), metav1.CreateOptions{})
	if err != nil {
		return err
	}
	f.objects[agent.ObjectKey(obj)] = obj
	return nil
}

// Expect records for Barrier an object the caller put in another API
// client (a fake policy clientset it hands the agents).
func (f *Fixture) Expect(obj runtime.Object) { f.objects[agent.ObjectKey(obj)] = obj }

// StartAgents starts one agent per node of the fixture, each programming its
// node's namespace over netlink; configure (may be nil) adjusts each
// agent's Config, given the node's namespace descriptor.
func (f *Fixture) StartAgents(ctx context.Context, nodes []string, configure func(cfg *agent.Config, nodeFD int)) error {
	ctx, f.cancel = context.WithCancel(ctx)
	for _, n := range nodes {
		fd, err := os.Open(f.Net.NodeNetNSPath(n))
		if err != nil {
			return err
		}
		cfg := agent.Config{NodeName: n, Kernel: nft.NewNetlink(int(fd.Fd())), ResyncInterval: time.Hour}
		if configure != nil {
			configure(&cfg, int(fd.Fd()))
		}
		a := agent.New(cfg, f.Client)
		f.Agents[n] = a
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer fd.Close()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				select {
				case f.errs <- fmt.Errorf("agent on %s: %w", n, err):
				default:
				}
			}
		}()
	}
	return nil
}

// Barrier waits until every agent has applied exactly the objects created
// so far.
func (f *Fixture) Barrier(ctx context.Context) error {
	want := map[string]string{}
	for k, o := range f.objects {
		want[k] = o.(metav1.Object).GetResourceVersion()
	}
	for n, a := range f.Agents {
		if err := a.WaitApplied(ctx, want); err != nil {
			return fmt.Errorf("%s: %w", n, err)
		}
	}
	return nil
}

// Close stops the agents and removes the lab; it reports an agent that
// failed on its own.
func (f *Fixture) Close() error {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	var errs []error
	for done := false; !done; {
		select {
		case err := <-f.errs:
			errs = append(errs, err)
		default:
			done = true
		}
	}
	return errors.Join(append(errs, f.Net.Close())...)
}
