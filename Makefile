# ccboot. `make demo` shows the main job locally (root, no AWS); `make test`
# runs the tests. See README.md.
SHELL := /bin/bash
# Go 1.27.3, fetched by the go command from the module proxy: 1.26.8 (what
# the machines start with) has standard-library vulnerabilities, and Go 1.26's
# fuzzing coordinator can race its own -fuzztime deadline and fail a
# target with "context deadline exceeded" on a busy machine (golang/go#75804,
# fixed in 1.27 only), which made `make reliability` flaky.
export GOTOOLCHAIN := go1.27.3
GO ?= go
GOBIN := $(shell $(GO) env GOPATH)/bin
AEMM_VERSION := v1.13.0
STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.9.0
PKGS := ./...

.PHONY: all build deps tools lint test unit demo dist licenses generate reliability fuzz e2e bench clean

all: build

# nethttpomithttp2: no bundled HTTP/2 (IMDS and the WaitCondition PUT speak
# HTTP/1.1); every build that stands for the release uses the same tags.
TAGS := nethttpomithttp2

build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -o bin/ccboot ./cmd/ccboot

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
	$(GO) vet -tags e2e,reliability,crashhook $(PKGS)
	$(GOBIN)/staticcheck $(PKGS)
	$(GOBIN)/staticcheck -tags e2e,reliability,crashhook $(PKGS)
	bash packaging/govulncheck.sh

# Unit, integration (metadata mock on loopback, real dpkg/npm/mkswap/systemctl
# where present) and blackbox tests, with the race detector.
unit: tools
	AEMM=$(GOBIN)/ec2-metadata-mock $(GO) test -race -count=1 $(PKGS)

test: lint unit

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

# Release artifacts into dist/: static stripped linux/arm64 and linux/amd64
# binaries, tarballs, .deb/.rpm, the SSM Distributor package
# (dist/distributor/VERSION/), SHA256SUMS; reproducible.
dist:
	VERSION=$(VERSION) packaging/dist.sh

# Rewrite THIRD_PARTY_LICENSES after a dependency change (dist checks it).
licenses:
	bash packaging/licenses.sh

# Refresh the template's embedded UserData, the checked-in unit file, and the
# image builders' copy of the UserData's verified download.
generate:
	$(GO) test ./packaging -run 'TestTemplateUserData|TestUnitFileMatchesInstall|TestBuildersShareVerifiedDownload' -update

demo: tools
	AEMM=$(GOBIN)/ec2-metadata-mock bash packaging/demo/demo.sh

# Fault injection, hostile input, crash consistency and fuzzing: prints each
# figure and fails below its goal. Needs root (chown, chroot, a tmpfs in a
# private mount namespace); -v is needed for the figure lines. Each fuzz
# target replays its checked-in corpus, then explores for
# RELIABILITY_FUZZTIME (0: replay only). On failure the failing tests'
# messages (a new fuzz input in full) are printed from the full log, since
# CI shows only this output.
RELIABILITY_FUZZTIME ?= 15s
reliability: tools
	AEMM=$(GOBIN)/ec2-metadata-mock CCBOOT_FUZZTIME=$(RELIABILITY_FUZZTIME) $(GO) test -tags reliability -count=1 -timeout 20m -run Reliability -v ./cmd/ccboot/ 2>&1 | tee .reliability.log | grep -E '^(crash-consistency|imds-faults|hostile-home|hostile-home-races|bad-config|concurrency|disk-full|pkg-faults|claude-download-faults|doctor-hostile-config|broker-faults|elevate-session|fuzz|lock-perms|secret-leak|waitcondition):|^(---|FAIL|ok|PASS)'; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "failure details (from .reliability.log):"; grep -E -A 40 '_test\.go:[0-9]+:' .reliability.log | head -n 300; exit 1; }
	bash packaging/govulncheck.sh

# Longer coverage-guided fuzzing of the parsers and editors, FUZZTIME per
# target. A failing input lands in the package's testdata/fuzz: fix the
# code, give the file a name that says what it is, and commit it as a seed.
FUZZTIME ?= 60s
fuzz:
	CCBOOT_FUZZTIME=$(FUZZTIME) $(GO) test -tags reliability -count=1 -timeout 0 -run 'ReliabilityFuzz$$' -v ./cmd/ccboot/ 2>&1 | tee .fuzz.log | grep -E '^fuzz:|^(---|FAIL|ok|PASS)|_test\.go:[0-9]+:'; test $${PIPESTATUS[0]} -eq 0

# Real boots: systemd as PID 1, real cloud-init, apt/dnf/npm from local
# repositories, the metadata mock, the shipped UserData; nspawn and QEMU in
# loopback-only namespaces. Needs root. The rootfs/repository cache lives
# outside the clone (/var/cache/ccboot-e2e), built once (~8-10 min cold).
e2e: tools
	mkdir -p dist
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -o dist/ccboot-e2e-amd64 ./cmd/ccboot
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build -trimpath -tags $(TAGS) -o dist/ccboot-e2e-arm64 ./cmd/ccboot
	bash packaging/e2e/deps.sh
	bash packaging/e2e/cache.sh >/dev/null
	CCBOOT_E2E_BIN_AMD64=$(CURDIR)/dist/ccboot-e2e-amd64 CCBOOT_E2E_BIN_ARM64=$(CURDIR)/dist/ccboot-e2e-arm64 \
	  $(GO) test -tags e2e -count=1 -v -timeout 60m ./packaging/e2e/ 2>&1 | tee .e2e.log | grep -E '^(timing:|---|FAIL|ok|PASS)|^\s+---'; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "failure details (from .e2e.log):"; grep -E -A 20 '_test\.go:[0-9]+:' .e2e.log | head -n 300; exit 1; }

# Cold bootstrap vs the seed shell UserData (alternating nspawn boots), no-op
# repair, status, self cost, binary size ladder, IMDS calls -> BENCHMARKS.md.
# BENCH_PAIRS=N (default 3; 0 skips nspawn). Needs root and the e2e cache.
bench: tools
	bash packaging/e2e/deps.sh
	command -v hyperfine >/dev/null && command -v strace >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends hyperfine strace
	AEMM=$(GOBIN)/ec2-metadata-mock bash packaging/bench/bench.sh

clean:
	rm -rf bin dist
