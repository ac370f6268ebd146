# ccboot. `make demo` shows the main job locally (root, no AWS); `make test`
# runs the tests. See README.md.
SHELL := /bin/bash
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
AEMM_VERSION := v1.13.0
STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.9.0
PKGS := ./...

.PHONY: all build deps tools lint test unit demo dist generate e2e reliability bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/ccboot ./cmd/ccboot

# Debian packages the tests drive, and Go tools at pinned versions from the
# Go module proxy.
deps:
	bash packaging/dev-deps.sh

tools: deps
	$(GO) install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$(AEMM_VERSION)
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

lint: tools
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GOBIN)/staticcheck $(PKGS)

# Unit, integration (metadata mock on loopback, real dpkg/npm/mkswap/systemctl
# where present) and blackbox tests, with the race detector.
unit: tools
	AEMM=$(GOBIN)/ec2-metadata-mock $(GO) test -race -count=1 $(PKGS)

test: lint unit

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Release artifacts into dist/: static stripped linux/arm64 and linux/amd64
# binaries, tarballs, .deb/.rpm, SHA256SUMS; reproducible.
dist:
	VERSION=$(VERSION) packaging/dist.sh

# Refresh the template's embedded UserData and the checked-in unit file.
generate:
	$(GO) test ./packaging -run 'TestTemplateUserData|TestUnitFileMatchesInstall' -update

demo: tools
	AEMM=$(GOBIN)/ec2-metadata-mock bash packaging/demo/demo.sh

clean:
	rm -rf bin dist
