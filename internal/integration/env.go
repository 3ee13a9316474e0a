package integration

import (
	"context"
	"io"
	"os"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Env is everything a run against a real API server needs: the server with
// deploy/ applied, the agent binary, and a kubeconfig with the DaemonSet's
// service-account credentials. The integration tests use one; the lab's
// --apiserver mode is meant to (see the package doc).
type Env struct {
	Cluster *Cluster
	Dir     string // scratch directory: agent binary, kubeconfigs, logs
	// AgentBinary is this repository's nftpolicy, built for the run.
	AgentBinary string
	// AgentKubeconfig authenticates as kube-system/nftpolicy, the
	// DaemonSet's service account, with deploy/'s RBAC.
	AgentKubeconfig string
	AgentREST       *rest.Config
}

// NewEnv builds (or finds cached) kube-apiserver and etcd, starts them,
// creates every manifest of deployDir through the API (NewLabEnv), and
// builds the agent. Close undoes it all.
func NewEnv(ctx context.Context, log io.Writer, deployDir string) (*Env, error) {
	e, err := NewLabEnv(ctx, log, deployDir)
	if err != nil {
		return nil, err
	}
	if e.AgentBinary, err = BuildNftpolicy(ctx, e.Dir); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close stops the servers and removes every file of the run.
func (e *Env) Close() {
	if e.Cluster != nil {
		e.Cluster.Stop()
	}
	if e.Dir != "" {
		os.RemoveAll(e.Dir)
	}
}

// CreateNode creates a node with its InternalIPs in its status.
func CreateNode(ctx context.Context, c kubernetes.Interface, node *v1.Node, ips ...string) error {
	created, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	for _, ip := range ips {
		created.Status.Addresses = append(created.Status.Addresses, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip})
	}
	_, err = c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

// CreatePod creates a pod already bound to its node (no scheduler runs)
// and then, as a kubelet would, sets its phase and addresses through the
// status subresource (a create ignores status). It returns the pod as
// stored, with the server's resourceVersion.
func CreatePod(ctx context.Context, c kubernetes.Interface, pod *v1.Pod) (*v1.Pod, error) {
	status := pod.Status
	if status.Phase == "" {
		status.Phase = v1.PodRunning
	}
	pod = pod.DeepCopy()
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Image == "" {
			pod.Spec.Containers[i].Image = "registry.invalid/none" // required; nothing pulls it
		}
	}
	created, err := c.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	created.Status = status
	return c.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
}

// DeletePod deletes a pod at once: with no kubelet to confirm, a graceful
// delete would leave it terminating for good.
func DeletePod(ctx context.Context, c kubernetes.Interface, namespace, name string) error {
	zero := int64(0)
	return c.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}
