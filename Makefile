# nftpolicy. `make demo` shows it working on real namespaces and real
# packets; `make test` runs every test (unit, kernel and lab). Both need root
# for network namespaces; .ci/run installs nftables and iproute2 first.

GO      ?= go
BIN     := bin/nftpolicy
PKGS    := ./...

.PHONY: all build test unit lint demo lab-down clean kube-binaries integration

all: build

build:
	$(GO) build -o $(BIN) ./cmd/nftpolicy

# Every test: unit tests, the ones that program a kernel in throwaway
# network namespaces, the lab scenarios, and the integration tests against
# a real kube-apiserver (built first by kube-binaries).
test: lint kube-binaries
	$(GO) test -count=1 -timeout 30m $(PKGS)

# Unit tests only: no root, no kernel.
unit:
	$(GO) test -count=1 -short $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# kube-apiserver and etcd for the integration tests, built from the Go
# module proxy once per version and cached (~/.cache/nftpolicy, or
# $NFTPOLICY_CACHE_DIR); the first build takes about 20 minutes on 2 cores.
kube-binaries:
	$(GO) run ./internal/integration/kubebuild

# The integration tests alone (root: they use network namespaces).
integration: kube-binaries
	$(GO) test -count=1 -timeout 20m -v ./internal/integration

demo: build
	./$(BIN) demo

lab-down: build
	./$(BIN) lab down

clean:
	rm -rf bin

