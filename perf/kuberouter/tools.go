//go:build tools

// Package tools pins kube-router, the real peer perf/bench compares
// nftpolicy with. It is a module of its own so that none of kube-router's
// dependencies reach nftpolicy's go.mod; nothing here is shipped. make
// kube-router builds its command into the cache.
package tools

import _ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
