# nftpolicy. `make demo` shows it working on real namespaces and real
# packets; `make test` runs every test (unit, kernel and lab). Both need root
# for network namespaces; .ci/run installs nftables and iproute2 first.

GO      ?= go
BIN     := bin/nftpolicy
PKGS    := ./...

.PHONY: all build test unit lint demo lab-down clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/nftpolicy

# Every test: unit tests, the ones that program a kernel in throwaway
# network namespaces, and the lab scenarios.
test: lint
	$(GO) test -count=1 -timeout 30m $(PKGS)

# Unit tests only: no root, no kernel.
unit:
	$(GO) test -count=1 -short $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

demo: build
	./$(BIN) demo

lab-down: build
	./$(BIN) lab down

clean:
	rm -rf bin
