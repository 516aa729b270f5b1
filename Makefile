# herd — build, test, demo and benchmark targets.
# Every target installs what it needs (Debian packages) so a fresh machine works.

GO        ?= go
BIN       := bin/herd
PKGS      := ./...
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/herd-io/herd/node.Version=$(VERSION)
export CGO_ENABLED ?= 0

.PHONY: all build test test-unit test-integration demo bench lint fuzz deps clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/herd

# deps installs the system packages the multi-host tests use (network namespaces, tc shaping).
deps:
	@./integration/scripts/install-deps.sh

test: deps build
	HERD_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 18m -p 2 $(PKGS)

test-unit:
	$(GO) test -count=1 -short $(PKGS)

demo: build
	@./integration/scripts/demo.sh $(CURDIR)/$(BIN)

bench: deps build
	@HERD_BIN=$(CURDIR)/$(BIN) ./integration/scripts/bench.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

FUZZTIME ?= 15s
fuzz:
	@./integration/scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
