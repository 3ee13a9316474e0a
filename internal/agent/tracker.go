package agent

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// tracker records what the informers saw between two syncs, per object:
// the first old object and the last new one (kube-proxy's change tracker).
// A sync takes the record and applies each object's net change once, so no
// event is lost, none is applied twice, and a burst of updates to one
// object costs one change.
type tracker struct {
	mu      sync.Mutex
	changes map[string]*change
}

// change is one object's net change since the last sync: old nil means it
// was added, new nil that it was deleted.
type change struct {
	kind, namespace, name string
	old, new              metav1.Object
}

// key names the object as WaitApplied's versions do.
func (c *change) key() string { return objectKey(c.kind, c.namespace, c.name) }

// remote reports whether the object is a remote cluster's (RemoteTransform
// qualified its name or namespace).
func (c *change) remote() bool {
	cl, _ := model.SplitRemote(c.namespace + c.name)
	return cl != ""
}

func newTracker() *tracker { return &tracker{changes: map[string]*change{}} }

// record notes that an object went from old to new (either may be nil).
// Objects of kinds the model does not know are ignored.
func (t *tracker) record(old, new any) {
	old, new = finalState(old), finalState(new)
	ref := new
	if ref == nil {
		ref = old
	}
	kind, ns, name, ok := model.RefOf(ref)
	if !ok {
		return
	}
	o, _ := old.(metav1.Object)
	n, _ := new.(metav1.Object)
	c := &change{kind: kind, namespace: ns, name: name, old: o, new: n}
	t.mu.Lock()
	defer t.mu.Unlock()
	if first, ok := t.changes[c.key()]; ok {
		c.old = first.old
	}
	if c.old == nil && c.new == nil {
		delete(t.changes, c.key()) // added and deleted between two syncs
		return
	}
	t.changes[c.key()] = c
}

// take returns the changes recorded since the last take.
func (t *tracker) take() []*change {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*change, 0, len(t.changes))
	for _, c := range t.changes {
		out = append(out, c)
	}
	t.changes = map[string]*change{}
	return out
}

// finalState unwraps the tombstone an informer hands to a delete handler
// when it missed the delete itself (after a relist).
func finalState(obj any) any {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tomb.Obj
	}
	return obj
}
