package agent

import (
	"context"
	"net"
	"os"
	"time"

	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// IPVS (kube-proxy or kube-router in IPVS mode) takes a connection to a
// Service on the node it enters and re-sends it to the endpoint through
// the node's output hook, where only the output chains can judge it. Each
// hook whose chains reach the peer maps costs every commit that adds a
// jump one more walk of them (docs/nftables-notes.md), so the table has
// output chains only where IPVS may run: turned on, never off, by
// --ipvs=true or by detection (--ipvs=auto), which looks again until it
// finds IPVS, so that a kube-proxy started after the agent is followed.
// Between IPVS starting and the next look (10 s by default), the
// connections it re-sends to this node's pods are not judged: set
// --ipvs=true where IPVS is known to run.

// detectIPVS asks cfg.IPVSDetect once before the first sync (so the
// startup guard and the first table have the output chains) and then
// every IPVSCheckInterval in the background until it says yes.
func (a *Agent) detectIPVS(ctx context.Context, logger klog.Logger) {
	if a.cfg.IPVSDetect == nil || a.cfg.Model.IPVS {
		return
	}
	if a.cfg.IPVSDetect() {
		a.cfg.Model.IPVS = true
		logger.Info("IPVS may run on this node: the output chains judge what it re-sends")
		return
	}
	go func() {
		t := time.NewTicker(a.cfg.IPVSCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if a.cfg.IPVSDetect() {
				a.ipvsSeen.Store(true)
				a.runner.Request()
				return
			}
		}
	}()
}

// followIPVS, in the sync, adds the output chains once detection found
// IPVS after the start.
func (a *Agent) followIPVS(logger klog.Logger) {
	if !a.ipvsSeen.Load() || a.engine.IPVS() {
		return
	}
	a.engine.SetIPVS(true)
	logger.Info("IPVS appeared on this node: the output chains judge what it re-sends from now on")
}

// DetectIPVS reports whether IPVS may run in the network namespace open as
// fd (-1: the agent's own): the ip_vs module is loaded (its /proc/net
// entry is in every namespace then) or kube-proxy's dummy interface
// kube-ipvs0 is there.
func DetectIPVS(fd int) bool {
	found := false
	look := func() error {
		if _, err := os.Stat("/proc/thread-self/net/ip_vs"); err == nil {
			found = true
		} else if _, err := net.InterfaceByName("kube-ipvs0"); err == nil {
			found = true
		}
		return nil
	}
	if fd < 0 {
		_ = look()
	} else if err := netns.Do(fd, look); err != nil {
		return false
	}
	return found
}
