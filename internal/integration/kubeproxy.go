package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeProxySpec is one node's kube-proxy.
type KubeProxySpec struct {
	Binary string // BuildKubeProxy's
	Node   string // --hostname-override: the Node object it serves
	NetNS  string // the node's network namespace (name under /run/netns)
	// ClusterCIDRs are the pod ranges, comma separated: traffic from
	// outside them to a Service is masqueraded (detectLocalMode
	// ClusterCIDR, kube-proxy's default).
	ClusterCIDRs string
}

// KubeProxy is a running kube-proxy in --proxy-mode=nftables.
type KubeProxy struct {
	Node string
	dir  string
	log  *os.File
	p    *proc
}

// StartKubeProxy runs the real kube-proxy in nftables mode inside a
// node's namespace, against c as the admin (RBAC is not what these runs
// test). Its configuration keeps it to that namespace: the conntrack
// settings it would otherwise write (nf_conntrack_max is global) are
// zero, which kube-proxy reads as "leave alone". minSyncPeriod 0 makes it
// sync on every change, so a lab step waits for it as briefly as the
// agents.
func (c *Cluster) StartKubeProxy(spec KubeProxySpec) (_ *KubeProxy, err error) {
	dir, err := os.MkdirTemp(c.Dir, "kube-proxy-"+spec.Node+"-")
	if err != nil {
		return nil, err
	}
	kp := &KubeProxy{Node: spec.Node, dir: dir}
	defer func() {
		if err != nil {
			kp.Stop()
		}
	}()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.writeAdminKubeconfig(kubeconfig); err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %q
hostnameOverride: %q
clusterCIDR: %q
bindAddress: 0.0.0.0
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nftables:
  syncPeriod: 1h
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, kubeconfig, spec.Node, spec.ClusterCIDRs)
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		return nil, err
	}
	if kp.log, err = os.Create(filepath.Join(dir, "kube-proxy.log")); err != nil {
		return nil, err
	}
	kp.p, err = startProc(kp.log, "ip", "netns", "exec", spec.NetNS, spec.Binary, "--config="+configFile, "--v=2")
	if err != nil {
		return nil, err
	}
	return kp, nil
}

// Running reports whether the process is still up.
func (kp *KubeProxy) Running() bool { return kp.p != nil && kp.p.running() }

// LogTail is the end of kube-proxy's log, for error messages.
func (kp *KubeProxy) LogTail() string {
	data, err := os.ReadFile(filepath.Join(kp.dir, "kube-proxy.log"))
	if err != nil {
		return ""
	}
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return strings.TrimSpace(string(data))
}

// Stop kills kube-proxy and removes its files. Its tables stay in the
// node's namespace, which goes with the lab.
func (kp *KubeProxy) Stop() error {
	if kp.p != nil {
		kp.p.kill()
	}
	var errs []error
	if kp.log != nil {
		errs = append(errs, kp.log.Close())
	}
	errs = append(errs, os.RemoveAll(kp.dir))
	return errors.Join(errs...)
}

// writeAdminKubeconfig writes a kubeconfig for c's admin (the peers the
// lab runs next to the agents: kube-proxy, kube-router).
func (c *Cluster) writeAdminKubeconfig(path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["lab"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthority: c.CAFile}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: adminToken}
	kc.Contexts["default"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: "admin"}
	kc.CurrentContext = "default"
	return clientcmd.WriteToFile(*kc, path)
}
