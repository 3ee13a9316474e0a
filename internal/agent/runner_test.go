package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestRunnerCoalesces: a burst of requests while a run is in progress
// causes one more run, not one per request, and runs are minInterval apart.
func TestRunnerCoalesces(t *testing.T) {
	const minInterval = 50 * time.Millisecond
	var mu sync.Mutex
	var runs []time.Time
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	r := newRunner(func(context.Context) error {
		mu.Lock()
		runs = append(runs, time.Now())
		first := len(runs) == 1
		mu.Unlock()
		started <- struct{}{}
		if first {
			<-release
		}
		return nil
	}, minInterval, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { r.Loop(ctx); close(done) }()

	r.Request()
	<-started
	for i := 0; i < 1000; i++ {
		r.Request()
	}
	close(release)
	<-started
	// Nothing else is pending: no third run.
	select {
	case <-started:
		t.Error("a third run after one burst")
	case <-time.After(4 * minInterval):
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	if gap := runs[1].Sub(runs[0]); gap < minInterval {
		t.Errorf("runs %v apart, want at least %v", gap, minInterval)
	}
}

// TestRunnerPeriodic: with no requests the runner still runs every
// maxInterval (the periodic resync).
func TestRunnerPeriodic(t *testing.T) {
	ran := make(chan struct{}, 10)
	r := newRunner(func(context.Context) error { ran <- struct{}{}; return nil }, 0, 30*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Loop(ctx)
	for i := 0; i < 3; i++ {
		select {
		case <-ran:
		case <-time.After(time.Second):
			t.Fatalf("periodic run %d did not come", i+1)
		}
	}
}

// TestRunnerBackoff: after failures the runner retries with growing
// delays, and requests in between do not cut the backoff short.
func TestRunnerBackoff(t *testing.T) {
	var mu sync.Mutex
	var runs []time.Time
	r := newRunner(func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		runs = append(runs, time.Now())
		if len(runs) < 4 {
			return errors.New("fail")
		}
		return nil
	}, 0, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Loop(ctx)
	r.Request()
	stop := time.After(2 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-tick.C:
			r.Request() // an event storm while failing
		case <-stop:
			break loop
		}
	}
	cancel()
	mu.Lock()
	defer mu.Unlock()
	if len(runs) < 4 {
		t.Fatalf("%d runs, want the failing ones and a success", len(runs))
	}
	// Failures at 0; retries after 100, 200, 400 ms; then requests again.
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if gap := runs[i+1].Sub(runs[i]); gap < want {
			t.Errorf("retry %d came after %v, want at least %v", i+1, gap, want)
		}
	}
}
