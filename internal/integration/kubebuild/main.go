// Command kubebuild builds (or finds in the cache) the kube-apiserver and
// etcd the integration tests run, and prints where they are. make runs it
// before the tests, so the first, slow build is not inside a test's
// timeout.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nftpolicy/nftpolicy/internal/integration"
)

func main() {
	bins, err := integration.Build(context.Background(), os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubebuild:", err)
		os.Exit(1)
	}
	fmt.Println(bins.APIServer)
	fmt.Println(bins.Etcd)
}
