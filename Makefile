# featherlb — build, test, demo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := build

BUN := node_modules/.bin/bun
TSC := node_modules/.bin/tsc
SRC := $(shell find src -name '*.ts' -not -name '*.test.ts') package.json

# Fragments owned by each part (they may add to BPF_OBJ, TEST_PREREQS, EMBED_FILES); included
# before the rules below so those variables are set when the prerequisites are read.
include bpf/bpf.mk
include test/e2e/e2e.mk
include test/bench/bench.mk
include packaging/release.mk

.PHONY: help deps build test typecheck demo clean

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed ## install pinned npm dependencies (Bun included)

build: dist/featherlb ## compile the single binary dist/featherlb

# FEATHERLB_COMMIT: what `featherlb --version` names (build/commit, packaging/release.mk); the target it
# prints is the host's (release builds set it, packaging/build.ts). Worker threads are entry points too:
# src/config/worker.ts (reloads parse the config on it), src/control/probe-worker.ts (health probes) and
# src/dataplane/proxy/worker.ts (the proxy workers); release builds take the same list.
ENTRYPOINTS := src/main.ts src/config/worker.ts src/control/probe-worker.ts src/dataplane/proxy/worker.ts src/dataplane/proxy/splice/thread.ts
dist/featherlb: node_modules/.installed $(SRC) $(BPF_OBJ) build/commit
	$(BUN) build --compile --minify --sourcemap $(ENTRYPOINTS) --define FEATHERLB_COMMIT='"'"$$(cat build/commit)"'"' --outfile $@

typecheck: node_modules/.installed
	$(TSC) --noEmit -p .

# The integration tests run the compiled binary (FEATHERLB_BIN); without it they run `bun src/main.ts`.
test: node_modules/.installed $(TEST_PREREQS) ## run every test (installs what it needs; XDP tests need root)
	$(MAKE) typecheck
	$(MAKE) build
	FEATHERLB_BIN=dist/featherlb $(BUN) test --timeout 60000 $(BUN_TEST_FLAGS)

demo: dist/featherlb ## run featherlb + 3 demo backends on loopback, print how a short load spreads
	$(BUN) run test/demo/demo.ts

clean: ## remove build outputs
	rm -rf dist build

