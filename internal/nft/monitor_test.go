package nft

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMonitorReportsForeignChangesOnly: the agent's own transactions (this
// process) and changes to other tables are not reported; every change to
// the nftpolicy table by the nft CLI is, once per batch.
func TestMonitorReportsForeignChangesOnly(t *testing.T) {
	ns := newNetns(t)
	k := NewNetlink(int(ns.file.Fd()))
	defer k.Close()
	events := make(chan string, 16)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- NewMonitor(int(ns.file.Fd()), k.SentFrom).Run(ctx, func() { close(ready) }, func(what string) { events <- what })
	}()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	}()
	<-ready

	// Our own transaction.
	mustApply(t, k, buildTx(sampleRuleset()))
	nft := func(args ...string) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name, "nft"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	// Another table's changes are not ours to repair.
	nft("add table inet someone-else")
	nft("add chain inet someone-else c")
	expectNone := func(what string) {
		t.Helper()
		select {
		case e := <-events:
			t.Fatalf("%s: reported %q, want nothing", what, e)
		case <-time.After(200 * time.Millisecond):
		}
	}
	expectNone("the agent's own batch and another table")

	for _, tc := range []struct{ cmd, want string }{
		{"delete element inet nftpolicy pods-v4 { 10.0.0.1 }", "deleted element"},
		{"flush chain inet nftpolicy pod-a", "deleted rule"},
		{"delete table inet nftpolicy", "deleted"},
	} {
		start := time.Now()
		nft(strings.Fields(tc.cmd)...)
		select {
		case e := <-events:
			if !strings.Contains(e, tc.want) || !strings.Contains(e, `"nft"`) {
				t.Errorf("%s: reported %q, want it to name %q and the nft process", tc.cmd, e, tc.want)
			}
			t.Logf("%s: reported %v after the nft process was started: %s", tc.cmd, time.Since(start), e)
		case <-time.After(time.Second):
			t.Fatalf("%s: not reported within a second", tc.cmd)
		}
		expectNone(tc.cmd + ", one batch")
	}
	// Our repair is ours again.
	mustApply(t, k, buildTx(sampleRuleset()))
	expectNone("the agent's repair")
}
