package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Cluster is a kube-apiserver and its etcd on 127.0.0.1, with everything
// under one temporary directory. Stop removes it all.
type Cluster struct {
	Dir    string
	URL    string // https://127.0.0.1:PORT
	CAFile string
	// Admin is a client in system:masters, for setting up the test.
	Admin     kubernetes.Interface
	AdminREST *rest.Config

	bins      Binaries
	where     Where
	etcd      *proc
	apiserver *proc
	apiArgs   []string
	logs      []*os.File
}

const adminToken = "nftpolicy-integration-admin"

// Where places the servers in a network namespace other than this
// process's: the lab's Service scenarios run them in a control-plane
// namespace linked to the nodes, so that kube-proxy in each node reaches
// the API server over the lab's own network, never the host's.
type Where struct {
	// NetNS is the name (under /run/netns) of the namespace the servers
	// run in; empty: this process's namespace.
	NetNS string
	// Addr is the API server's address in it (default 127.0.0.1); the
	// serving certificate names it.
	Addr string
	// Dial, when set, is how this process's clients reach the API server
	// (for instance a dial made from inside NetNS).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ServiceCIDRs is --service-cluster-ip-range (default 10.96.0.0/16).
	ServiceCIDRs string
}

// Start starts etcd and kube-apiserver and waits until the API server is
// ready. Both listen on 127.0.0.1 only.
func Start(ctx context.Context, bins Binaries) (*Cluster, error) {
	return StartIn(ctx, bins, Where{})
}

// StartIn is Start with the servers placed by w.
func StartIn(ctx context.Context, bins Binaries, w Where) (_ *Cluster, err error) {
	if w.Addr == "" {
		w.Addr = "127.0.0.1"
	}
	if w.ServiceCIDRs == "" {
		w.ServiceCIDRs = "10.96.0.0/16"
	}
	dir, err := os.MkdirTemp("", "nftpolicy-apiserver-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, bins: bins, where: w}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, c.logTail())
			c.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c.etcd, err = c.spawn("etcd", bins.Etcd,
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient,
		"--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer,
		"--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}

	if err := c.writeCredentials(); err != nil {
		return nil, err
	}
	c.URL = "https://" + net.JoinHostPort(w.Addr, strconv.Itoa(ports[2]))
	c.apiArgs = []string{
		"--etcd-servers=" + etcdClient,
		"--bind-address=" + w.Addr,
		"--advertise-address=" + w.Addr,
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--tls-cert-file=" + filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "serving.key"),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=" + w.ServiceCIDRs,
		"--authorization-mode=RBAC",
		// No controller manager creates default service accounts, and no
		// kubelet confirms deletions: pods are created without one and
		// deleted with grace period 0.
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}
	if err := c.startAPIServer(ctx); err != nil {
		return nil, err
	}
	c.AdminREST = &rest.Config{Host: c.URL, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile}, QPS: 100, Burst: 200, Dial: w.Dial}
	c.Admin, err = kubernetes.NewForConfig(c.AdminREST)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	var err error
	c.apiserver, err = c.spawn("kube-apiserver", c.bins.APIServer, c.apiArgs...)
	if err != nil {
		return err
	}
	return c.waitReady(ctx, 2*time.Minute)
}

// RestartAPIServer kills the API server and starts it again on the same
// port and etcd: an outage, as the agents see it.
func (c *Cluster) RestartAPIServer(ctx context.Context, down time.Duration) error {
	c.apiserver.kill()
	time.Sleep(down)
	return c.startAPIServer(ctx)
}

// spawn starts a server with its output in the cluster's dir. It runs in
// its own process group and dies with the test process.
func (c *Cluster) spawn(name, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c.logs = append(c.logs, logf)
	if c.where.NetNS != "" {
		return startProc(logf, "ip", append([]string{"netns", "exec", c.where.NetNS, bin}, args...)...)
	}
	return startProc(logf, bin, args...)
}

// Stop kills the servers and removes their directory.
func (c *Cluster) Stop() {
	c.apiserver.kill()
	c.etcd.kill()
	for _, f := range c.logs {
		f.Close()
	}
	os.RemoveAll(c.Dir)
}

// logTail is the end of the servers' logs, for error messages.
func (c *Cluster) logTail() string {
	var b strings.Builder
	for _, name := range []string{"etcd", "kube-apiserver"} {
		data, err := os.ReadFile(filepath.Join(c.Dir, name+".log"))
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "\n--- end of %s's log ---\n%s", name, data)
	}
	return b.String()
}

// waitReady polls /readyz until it answers ok.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: c.where.Dial}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !c.apiserver.running() {
			return errors.New("kube-apiserver exited")
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := hc.Do(req)
		if err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body[:n])
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %v: %s", timeout, last)
}

// writeCredentials writes the serving certificate (its own CA), the
// service-account signing key and the admin's static token.
func (c *Cluster) writeCredentials() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nftpolicy-integration"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(c.where.Addr)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	c.CAFile = filepath.Join(c.Dir, "serving.crt")
	files := map[string][]byte{
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"serving.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
		"tokens.csv":  []byte(adminToken + ",admin,admin-uid,system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Apply creates every object in the YAML files (as `kubectl create -f`),
// and waits for CRDs to be established before later objects.
func (c *Cluster) Apply(ctx context.Context, files ...string) error {
	dyn, err := dynamic.NewForConfig(c.AdminREST)
	if err != nil {
		return err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.AdminREST)
	if err != nil {
		return err
	}
	cached := memory.NewMemCacheClient(disc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj unstructured.Unstructured
			if err := dec.Decode(&obj.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			gvk := obj.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", f, gvk, err)
			}
			var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
			if ns := obj.GetNamespace(); ns != "" {
				ri = dyn.Resource(mapping.Resource).Namespace(ns)
			}
			if _, err := ri.Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("%s: create %s %s: %w", f, gvk.Kind, obj.GetName(), err)
			}
			if gvk.Kind == "CustomResourceDefinition" {
				if err := c.waitEstablished(ctx, dyn, obj.GetName()); err != nil {
					return err
				}
				cached.Invalidate()
				mapper.Reset()
			}
		}
	}
	return nil
}

func (c *Cluster) waitEstablished(ctx context.Context, dyn dynamic.Interface, name string) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		crd, err := dyn.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, cd := range conds {
				m, _ := cd.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRD %s not established", name)
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the
// service account namespace/name with a token from the TokenRequest API,
// as a pod of the DaemonSet would.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, namespace, name, path string) (*rest.Config, error) {
	exp := int64(3600)
	tr, err := c.Admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["integration"] = &clientcmdapi.Cluster{Server: c.URL, CertificateAuthority: c.CAFile}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["default"] = &clientcmdapi.Context{Cluster: "integration", AuthInfo: name}
	kc.CurrentContext = "default"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return nil, err
	}
	return &rest.Config{Host: c.URL, BearerToken: tr.Status.Token, TLSClientConfig: rest.TLSClientConfig{CAFile: c.CAFile}, Dial: c.where.Dial}, nil
}
