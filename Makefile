# Wrenn build entry points. `make help` lists them.
SHELL := /bin/bash
GO    ?= go
BIN   := bin
RELEASE ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.release=$(RELEASE)

.PHONY: help deps web web-test build envd generate check-generate lint test test-loaded test-short bench bench-density run run-envd clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## install missing OS packages the build and tests need (root)
	./scripts/install-deps.sh
	./scripts/install-runsc.sh
	cd tests/e2bjs && npm ci --no-audit --no-fund
	cd web && npm ci --no-audit --no-fund
	cd tests/e2bjs/v250 && npm ci --no-audit --no-fund

# The dashboard is rebuilt only when its sources changed: a rebuild replaces web/build/app, which the
# Go package web embeds, so a needless one would race every `go build` of wrenn-cp running meanwhile
# (tests build it while tests/up runs `make run`).
WEB_SRC := $(shell find web/src web/static -type f 2>/dev/null) web/package.json web/package-lock.json \
	web/svelte.config.js web/vite.config.ts web/tsconfig.json
WEB_OUT := web/build/app/index.html

web: $(WEB_OUT) ## build the web dashboard into web/build/app (embedded by wrenn-cp; needs `make deps` once)

$(WEB_OUT): $(WEB_SRC)
	@command -v npm >/dev/null || ./scripts/install-deps.sh
	@test -d web/node_modules || { cd web && npm ci --no-audit --no-fund; }
	cd web && npm run build
	@touch $@

web-test: ## the dashboard's type check (svelte-check) and unit tests (vitest: PTY client, recipe highlighter)
	@test -d web/node_modules || { cd web && npm ci --no-audit --no-fund; }
	cd web && npm run check && npm test

build: web ## build every binary into bin/ (static), the control plane with the dashboard
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

envd: ## build the static envd binary
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/envd ./cmd/envd

generate: ## regenerate protobuf/Connect code from api/ and the store's sqlc code
	$(GO) tool buf generate
	$(GO) tool buf generate --template buf.gen.hostagent.yaml
	$(GO) tool sqlc generate -f internal/controlplane/store/sqlc.yaml

check-generate: generate ## fail when generated code is stale
	@git diff --exit-code -- api/ internal/controlplane/store/db/ || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- api/ internal/controlplane/store/db/)" || { git status --porcelain -- api/ internal/controlplane/store/db/; echo "generation produced untracked files"; exit 1; }

lint: ## go vet, staticcheck, buf lint
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) tool buf lint

test: deps check-generate lint web web-test ## everything CI runs: drift check, linters, all tests (as root)
	WRENN_TEST_DEBOOTSTRAP=1 $(GO) test -count=1 -timeout 40m ./...

test-loaded: ## `make test` with every core kept busy, as on a slow CI machine
	./scripts/busy.sh $(MAKE) test

test-short: ## unit tests only (no root, no external processes)
	$(GO) test -short ./...

bench: envd ## run the benchmarks and write docs/benchmarks.md
	$(GO) test -run '^$$' -bench . -benchmem -count 5 -timeout 30m ./internal/envd/... | tee $(BIN)/bench.txt
	WRENN_ENVD_BIN=$(CURDIR)/$(BIN)/envd $(GO) test -run '^$$' -bench . -skip Density -benchtime 5x -count 5 -timeout 20m ./tests/agentbench/... | tee -a $(BIN)/bench.txt
	$(GO) test -run '^$$' -bench ControlPlane -benchtime 20x -count 3 -timeout 30m ./tests/cp/... | tee -a $(BIN)/bench.txt
	$(GO) test -run '^$$' -bench WarmStart -benchtime 5x -count 1 -timeout 40m ./tests/cp/... | tee -a $(BIN)/bench.txt
	WRENN_TEST_DEBOOTSTRAP=1 $(GO) test -run '^$$' -bench BuildStep -benchtime 1x -count 1 -timeout 40m ./tests/builder/... | tee -a $(BIN)/bench.txt
	$(GO) run ./tools/benchreport -in $(BIN)/bench.txt -out docs/benchmarks.md

# Flags of `wrenn up` for `make run`, e.g. UP_FLAGS="--data-dir /srv/wrenn --listen 0.0.0.0:8080".
UP_FLAGS ?=
run: build ## set up and run the whole platform on this machine (root): `bin/wrenn up $(UP_FLAGS)`
	@test "$$(id -u)" = 0 || { echo "wrenn up runs the host agent, which runs capsules: run as root"; exit 1; }
	$(BIN)/wrenn up $(UP_FLAGS)

bench-density: envd ## the density benchmarks (not part of make bench); WRENN_DENSITY_N=200 for the 200-capsule target (docs/benchmarks.md)
	WRENN_ENVD_BIN=$(CURDIR)/$(BIN)/envd $(GO) test -run '^$$' -bench 'Density' -benchtime 1x -timeout 60m ./tests/agentbench/... | tee $(BIN)/bench-density.txt

run-envd: envd ## run envd alone on this host for local use (loopback, port 49983)
	@test "$$(id -u)" = 0 || { echo "envd runs processes as other users: run as root"; exit 1; }
	$(BIN)/envd -addr 127.0.0.1:49983 -forward-ports=false -run-dir $(CURDIR)/$(BIN)/run

DATA_DIR ?= /var/lib/wrenn
.PHONY: base-image
base-image: build ## build the base capsule image (debootstrap, root) into DATA_DIR/images: `wrenn-agent prepare-images`
	@test "$$(id -u)" = 0 || { echo "building images needs root"; exit 1; }
	$(BIN)/wrenn-agent prepare-images -data-dir $(DATA_DIR) -name base

clean: ## remove build output
	rm -rf $(BIN)
