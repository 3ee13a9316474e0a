package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KubeRouterVersion is the kube-router release perf compares nftpolicy
// with; perf/kuberouter's go.mod pins the same.
const KubeRouterVersion = "v2.1.0"

// KubeRouterBinary is where `make kube-router` puts kube-router (built by
// its own module, perf/kuberouter, so that none of its dependencies reach
// this module's go.mod). It is not built from here: a caller that finds
// no binary says the comparison was skipped and why.
func KubeRouterBinary() (string, error) {
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, fmt.Sprintf("kube-router-%s-%s-%s_%s", KubeRouterVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH), "kube-router")
	if !exists(bin) {
		return bin, fmt.Errorf("kube-router %s is not built (%s missing; `make kube-router` builds it, about 2.5 minutes)", KubeRouterVersion, bin)
	}
	return bin, nil
}

// KubeRouterSpec is one node's kube-router.
type KubeRouterSpec struct {
	Binary string // KubeRouterBinary's
	Node   string // NODE_NAME: its Node, whose first InternalIP it takes as its own
	NetNS  string // the node's network namespace (name under /run/netns)
	// MetricsPort is --metrics-port in the node's namespace (0: none).
	MetricsPort int
}

// KubeRouter is a running kube-router with only its network-policy
// controller: no routing, no service proxy. It finds its Node by
// NODE_NAME, programs pods whose status.hostIP is that Node's address,
// and shells out to iptables(-save/-restore) and ipset, which act on the
// node's namespace only.
type KubeRouter struct {
	Node    string
	Started time.Time
	dir     string
	log     *os.File
	p       *proc
}

// StartKubeRouter runs kube-router's firewall controller inside a node's
// namespace against c as the admin (RBAC is not what these runs test).
func (c *Cluster) StartKubeRouter(spec KubeRouterSpec) (_ *KubeRouter, err error) {
	dir, err := os.MkdirTemp(c.Dir, "kube-router-"+spec.Node+"-")
	if err != nil {
		return nil, err
	}
	kr := &KubeRouter{Node: spec.Node, dir: dir}
	defer func() {
		if err != nil {
			kr.Stop()
		}
	}()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.writeAdminKubeconfig(kubeconfig); err != nil {
		return nil, err
	}
	if kr.log, err = os.Create(filepath.Join(dir, "kube-router.log")); err != nil {
		return nil, err
	}
	// v=1 logs each sync's "Aborting sync" errors and its duration, which
	// a run checks; the health port is off (it would bind 20244 in the
	// node, for nothing here).
	args := []string{"netns", "exec", spec.NetNS, "env", "NODE_NAME=" + spec.Node, spec.Binary,
		"--kubeconfig=" + kubeconfig,
		"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
		"--health-port=0",
		"--metrics-port=" + strconv.Itoa(spec.MetricsPort),
		"--v=1",
	}
	kr.Started = time.Now()
	kr.p, err = startProc(kr.log, "ip", args...)
	if err != nil {
		return nil, err
	}
	return kr, nil
}

// Running reports whether the process is still up.
func (kr *KubeRouter) Running() bool { return kr.p != nil && kr.p.running() }

// Log is kube-router's whole log so far.
func (kr *KubeRouter) Log() string {
	data, _ := os.ReadFile(filepath.Join(kr.dir, "kube-router.log"))
	return string(data)
}

// LogTail is the end of kube-router's log, for error messages.
func (kr *KubeRouter) LogTail() string {
	s := kr.Log()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return strings.TrimSpace(s)
}

// Stop ends kube-router (SIGTERM, then SIGKILL after 5 s) and removes its
// files. Its chains and ipsets stay in the node's namespace, which goes
// with the lab (or the caller flushes them).
func (kr *KubeRouter) Stop() error {
	if kr.p != nil && kr.p.running() {
		kr.p.signal(syscall.SIGTERM)
		select {
		case <-kr.p.exited:
		case <-time.After(5 * time.Second):
			kr.p.kill()
		}
	}
	var errs []error
	if kr.log != nil {
		errs = append(errs, kr.log.Close())
	}
	errs = append(errs, os.RemoveAll(kr.dir))
	return errors.Join(errs...)
}
