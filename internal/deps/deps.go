package deps

import (
	_ "github.com/google/nftables"
	_ "github.com/mdlayher/netlink"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/apimachinery/pkg/apis/meta/v1"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes/fake"
	_ "k8s.io/component-base/logs"
	_ "sigs.k8s.io/network-policy-api/apis/v1alpha1"
	_ "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"
	_ "sigs.k8s.io/yaml"
)
