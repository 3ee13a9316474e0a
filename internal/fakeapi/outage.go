// Package fakeapi makes client-go's fake clientsets behave like an API
// server that can be taken away: while it is down every request fails and
// the open watches end, as when a cluster's API server is unreachable.
package fakeapi

import (
	"errors"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// ErrUnreachable is what every request gets while the server is down.
var ErrUnreachable = errors.New("fakeapi: the API server is unreachable")

// Client is what Outage needs of a fake clientset (client-go's and the
// network-policy-api's alike).
type Client interface {
	PrependReactor(verb, resource string, fn k8stesting.ReactionFunc)
	PrependWatchReactor(resource string, fn k8stesting.WatchReactionFunc)
	Tracker() k8stesting.ObjectTracker
}

// Outage switches the fake API servers it was installed on between up
// and down. Writes through the trackers (as the lab does) keep working
// while down: the server's state moves on, its clients do not see it.
type Outage struct {
	mu      sync.Mutex
	down    bool
	watches []*stoppable
}

// Install puts the outage's reactors in front of each client's own.
func Install(clients ...Client) *Outage {
	o := &Outage{}
	for _, c := range clients {
		o.install(c, c.Tracker())
	}
	return o
}

// NewReader is a clientset of the core kinds over another fake
// clientset's objects (its tracker), behind an outage of its own: one
// cluster's API server as one client sees it, so that it can be taken
// away from that client alone.
func NewReader(tracker k8stesting.ObjectTracker) (*fake.Clientset, *Outage) {
	c := fake.NewClientset()
	c.ReactionChain, c.WatchReactionChain = nil, nil
	c.AddReactor("*", "*", k8stesting.ObjectReaction(tracker))
	o := &Outage{}
	o.install(c, tracker)
	return c, o
}

func (o *Outage) install(c Client, tracker k8stesting.ObjectTracker) {
	c.PrependReactor("*", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		if o.Down() {
			return true, nil, ErrUnreachable
		}
		return false, nil, nil
	})
	c.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.down {
			return true, nil, ErrUnreachable
		}
		var opts metav1.ListOptions
		if wa, ok := action.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := tracker.Watch(action.GetResource(), action.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		s := newStoppable(w)
		o.watches = append(o.watches, s)
		return true, s, nil
	})
}

// Down reports whether the server is down.
func (o *Outage) Down() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.down
}

// SetDown takes the server away (true), ending its open watches, or
// brings it back (false): clients then list again and see what changed.
func (o *Outage) SetDown(down bool) {
	o.mu.Lock()
	o.down = down
	ws := o.watches
	if down {
		o.watches = nil
	}
	o.mu.Unlock()
	if down {
		for _, w := range ws {
			w.Stop()
		}
	}
}

// stoppable forwards a tracker's watch until stopped, then closes its
// channel: the client's reflector sees the watch end.
type stoppable struct {
	inner watch.Interface
	out   chan watch.Event
	stop  chan struct{}
	once  sync.Once
}

func newStoppable(w watch.Interface) *stoppable {
	s := &stoppable{inner: w, out: make(chan watch.Event), stop: make(chan struct{})}
	go func() {
		defer close(s.out)
		defer w.Stop()
		for {
			select {
			case <-s.stop:
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					return
				}
				select {
				case s.out <- ev:
				case <-s.stop:
					return
				}
			}
		}
	}()
	return s
}

func (s *stoppable) Stop()                          { s.once.Do(func() { close(s.stop) }) }
func (s *stoppable) ResultChan() <-chan watch.Event { return s.out }
