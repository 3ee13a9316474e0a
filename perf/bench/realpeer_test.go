package bench

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// The real kube-router, started in a lab node against a real API server
// with the probe objects only, enforces the probe namespace's policy on
// real packets: the newcomer (no Pod object, so in no ipset) is let
// through before it starts and rejected after, while a pod the policy
// admits still connects.
func TestRealKubeRouterEnforcesADeny(t *testing.T) {
	testutil.NeedKernel(t)
	bin, skip := peerSkip()
	if skip != "" {
		t.Skip("real kube-router: " + skip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pl, err := newPeerLab(ctx, testJanitor(t), Config{}, bin)
	if err != nil {
		t.Fatal(err)
	}
	defer pl.close()
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: gen.NodeUnderTest}}
	if _, err := pl.load(ctx, []runtime.Object{node}); err != nil {
		t.Fatal(err)
	}
	n := pl.nodes["kr"]
	probe := func(from string) netlab.Outcome {
		return pl.lab.ProbeAddr(ctx, n.id(from), n.server, "TCP", peerPort, time.Second)
	}
	if o := probe("newcomer"); o.Verdict != netlab.Allowed {
		t.Fatalf("before kube-router starts, newcomer → server is %v, want allowed", o)
	}
	a, started, err := pl.start(agentKR)
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop()
	d, flaps, err := pl.measureFlip(ctx, pl.markerFlip(n), started, 2*time.Minute, a)
	if err != nil {
		t.Fatalf("%v\n%s", err, a.logTail())
	}
	t.Logf("kube-router denied newcomer → server %v after its start (%d flaps %s)", d.Round(time.Millisecond), flaps.n, flaps.seen)
	// kube-router's pod chains end in REJECT: the refusal is an ICMP port
	// unreachable (Reset), where a drop would time out.
	if o := probe("newcomer"); o.Verdict != netlab.Denied || o.Reason != netlab.Reset {
		t.Errorf("newcomer → server is %v, want denied (reset) by kube-router's REJECT", o)
	}
	if o := probe("relabel"); o.Verdict != netlab.Allowed {
		t.Errorf("relabel (role=client) → server is %v, want allowed by the policy", o)
	}
	kr := a.(krAgent)
	s := parseKubeRouterLog(kr.p.Log())
	if s.Ended == 0 || s.Aborted != 0 {
		t.Errorf("kube-router's log: %d syncs ended, %d aborted (%q)", s.Ended, s.Aborted, s.Errors)
	}
}
