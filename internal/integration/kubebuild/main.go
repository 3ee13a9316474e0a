// Command kubebuild builds (or finds in the cache) the kube-apiserver,
// etcd and kube-proxy the integration tests and the lab's Service
// scenarios run, and prints where they are. make runs it before the
// tests, so the first, slow build is not inside a test's timeout.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nftpolicy/nftpolicy/internal/integration"
)

func main() {
	ctx := context.Background()
	bins, err := integration.Build(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubebuild:", err)
		os.Exit(1)
	}
	proxy, err := integration.BuildKubeProxy(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubebuild:", err)
		os.Exit(1)
	}
	fmt.Println(bins.APIServer)
	fmt.Println(bins.Etcd)
	fmt.Println(proxy)
}
