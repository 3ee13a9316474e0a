# nftpolicy. `make demo` shows it working on real namespaces and real
# packets; `make test` runs every test (unit, kernel and lab). Both need root
# for network namespaces; .ci/run installs nftables and iproute2 first.

GO      ?= go
BIN     := bin/nftpolicy
LAB     := bin/nftlab
PKGS    := ./...

.PHONY: all build test unit lint demo lab-down clean kube-binaries integration image

all: build

# Two binaries: nftpolicy is what a node runs (the agent, cleanup,
# compile); nftlab is the lab and the demo, which the agent does not carry.
build:
	$(GO) build -o $(BIN) ./cmd/nftpolicy
	$(GO) build -o $(LAB) ./cmd/nftlab

# Every test: unit tests, the ones that program a kernel in throwaway
# network namespaces, the lab scenarios, and the integration tests against
# a real kube-apiserver (built first by kube-binaries).
test: lint kube-binaries
	$(GO) test -count=1 -timeout 30m $(PKGS)
	$(MAKE) --no-print-directory fuzz-short

# Each fuzz target (every func Fuzz* of FUZZ_PKGS) for FUZZTIME, one after
# the other; go test alone runs only their seeds and committed corpus. One
# instrumented test binary per package, run in the package's directory with
# go test's own corpus cache, so ten targets cost two links, not ten.
# Go's coordinator can report its own -fuzztime deadline as "context
# deadline exceeded" with nothing found (a race between the deadline's
# parent and child contexts): that alone, with no failing input written,
# is not a failure.
FUZZTIME  ?= 8s
FUZZ_PKGS := internal/compile internal/scenario internal/fqdn internal/model internal/nft
.PHONY: fuzz-short
fuzz-short:
	@set -e; mkdir -p bin/fuzz; \
	for pkg in $(FUZZ_PKGS); do \
	  bin=$(CURDIR)/bin/fuzz/$$(basename $$pkg).test; \
	  $(GO) test -c -fuzz=. -o $$bin ./$$pkg; \
	  cache=$$($(GO) env GOCACHE)/fuzz/$$($(GO) list ./$$pkg); \
	  for t in $$(cd $$pkg && $$bin -test.list='^Fuzz'); do \
	    echo "$$pkg $$t:"; \
	    log=$(CURDIR)/bin/fuzz/$$t.log; \
	    (cd $$pkg && $$bin -test.run='^$$' -test.fuzz="^$$t\$$" -test.fuzztime=$(FUZZTIME) \
	      -test.fuzzcachedir=$$cache >$$log 2>&1) || \
	    if grep -qx '    context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
	      echo "  (go's fuzz coordinator raced with its own -fuzztime deadline; no failing input: not a failure)"; \
	    else grep -v '^fuzz: elapsed' $$log; exit 1; fi; \
	    grep '^fuzz: elapsed' $$log | tail -1; \
	  done; \
	done

# Unit tests only: no root, no kernel.
unit:
	$(GO) test -count=1 -short $(PKGS)

# The seeded random tests (internal/compile: the evaluator against traced
# rulesets, explain and preview against the evaluator, incremental against
# from-scratch, transitions on the Fake and on a kernel) on seeds that
# `make test` does not run: rounds 1 to ROUNDS of NFTPOLICY_SEED_ROUND
# (internal/testutil/seeds.go). A failure names its seed and round.
ROUNDS ?= 5
.PHONY: soak
soak:
	@set -e; for r in $$(seq 1 $(ROUNDS)); do \
	  echo "round $$r:"; \
	  NFTPOLICY_SEED_ROUND=$$r $(GO) test -count=1 -timeout 60m ./internal/compile; \
	done

# gofmt, go vet and staticcheck, all clean. staticcheck is pinned and built
# once from the Go module proxy into the cache (as kube-binaries does), so
# every machine lints with the same checks.
STATICCHECK_VERSION := v0.8.2
CACHE_DIR   ?= $(or $(NFTPOLICY_CACHE_DIR),$(HOME)/.cache/nftpolicy)
STATICCHECK := $(CACHE_DIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

$(STATICCHECK):
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# kube-apiserver and etcd for the integration tests, and kube-proxy for the
# lab's Service scenarios (its own cache entry), built from the Go
# module proxy once per version and cached (~/.cache/nftpolicy, or
# $NFTPOLICY_CACHE_DIR); the first build takes about 20 minutes on 2 cores.
kube-binaries:
	$(GO) run ./internal/integration/kubebuild

# The integration tests alone (root: they use network namespaces).
integration: kube-binaries
	$(GO) test -count=1 -timeout 20m -v ./internal/integration

demo: build
	./$(LAB) demo

lab-down: build
	./$(LAB) down

clean:
	rm -rf bin

# The agent's image, built offline: the static binary (CGO_ENABLED=0) in an
# image FROM scratch (deploy/Dockerfile), built with podman and saved as a
# docker-archive tarball (docker load, podman load, kind load image-archive,
# ctr images import). IMAGE is the DaemonSet's image reference; a test
# checks that deploy/20-daemonset.yaml names the same. Installs podman and
# runc when apt-get can (Debian's crun cannot run containers on a host with
# a hybrid cgroup hierarchy; runc can). Not part of make test.
IMAGE       ?= ghcr.io/nftpolicy/nftpolicy:latest
IMAGE_BUILD ?= bin/image
IMAGE_TAR   ?= bin/nftpolicy-image.tar
PODMAN      ?= podman
image:
	@command -v $(PODMAN) >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc; }
	mkdir -p $(IMAGE_BUILD)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(IMAGE_BUILD)/nftpolicy ./cmd/nftpolicy
	$(PODMAN) build --quiet -f deploy/Dockerfile -t $(IMAGE) $(IMAGE_BUILD)
	rm -f $(IMAGE_TAR)
	$(PODMAN) save --quiet --format docker-archive -o $(IMAGE_TAR) $(IMAGE)

# kube-router v2.1.0, the real peer perf compares with (only its firewall
# controller, only inside lab namespaces; never shipped): built once from
# the Go module proxy by its own module, perf/kuberouter, so none of its
# dependencies reach nftpolicy's go.mod (~2.5 minutes on 2 cores, 82 MB).
# A failed build is not fatal to make perf: the tables then say skipped.
KUBE_ROUTER_VERSION := v2.1.0
KUBE_ROUTER_DIR     := $(CACHE_DIR)/kube-router-$(KUBE_ROUTER_VERSION)-$(shell $(GO) env GOVERSION)-$(shell $(GO) env GOOS)_$(shell $(GO) env GOARCH)
KUBE_ROUTER         := $(KUBE_ROUTER_DIR)/kube-router
.PHONY: kube-router
kube-router: $(KUBE_ROUTER)
$(KUBE_ROUTER):
	mkdir -p $(KUBE_ROUTER_DIR)
	cd perf/kuberouter && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" \
	  -o $(KUBE_ROUTER).tmp github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
	mv $(KUBE_ROUTER).tmp $(KUBE_ROUTER)

# The performance suite (root; everything in throwaway namespaces): sizes S,
# M and L, the data path, the peers' strategies as baselines, and the real
# kube-router next to the agent at S and M (-kube-router-real; it needs
# kube-apiserver, make kube-binaries); writes perf/results/results.md and
# results.json (~40 minutes on 2 cores). Installs iptables and ipset for
# kube-router when apt-get can; where they or kube-router's build are
# missing, its tables say "skipped" and why.
.PHONY: perf perf-quick
perf: kube-binaries
	@command -v ipset >/dev/null 2>&1 && command -v iptables-legacy-restore >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables ipset; } || \
	  echo "perf: no iptables/ipset: the kube-router baseline and the real kube-router are skipped"
	@$(MAKE) --no-print-directory kube-router || \
	  echo "perf: kube-router $(KUBE_ROUTER_VERSION) could not be built: the real-peer tables say skipped"
	$(GO) build -o bin/nftperf ./perf/cmd/nftperf
	./bin/nftperf -kube-router-real -out perf/results

# The suite as a smoke test: S only, few repetitions; asserts no timing.
perf-quick:
	$(GO) build -o bin/nftperf ./perf/cmd/nftperf
	./bin/nftperf -quick -out perf/results/quick.tmp
