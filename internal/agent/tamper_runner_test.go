package agent

import (
	"context"
	"testing"
	"time"
)

// TestRunnerRequestNowSkipsMinInterval: a plain request waits out
// minInterval after the last run; RequestNow (a repair) runs at once, and
// leaves nothing behind that would hurry a later plain request.
func TestRunnerRequestNowSkipsMinInterval(t *testing.T) {
	runs := make(chan time.Time, 10)
	r := newRunner(func(context.Context) error { runs <- time.Now(); return nil }, time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Loop(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	r.Request()
	<-runs // the first run has no minInterval to wait out
	r.Request()
	select {
	case <-runs:
		t.Fatal("a plain request ran within minInterval")
	case <-time.After(200 * time.Millisecond):
	}
	asked := time.Now()
	r.RequestNow()
	select {
	case at := <-runs:
		if d := at.Sub(asked); d > 100*time.Millisecond {
			t.Errorf("RequestNow ran after %v, want at once", d)
		}
	case <-time.After(time.Second):
		t.Fatal("RequestNow did not run within a second")
	}
	r.Request()
	select {
	case <-runs:
		t.Fatal("a plain request after RequestNow's run ran within minInterval")
	case <-time.After(200 * time.Millisecond):
	}
}
