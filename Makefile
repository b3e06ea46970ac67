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

.PHONY: help deps build test typecheck demo clean

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

deps: node_modules/.installed ## install pinned npm dependencies (Bun included)

build: dist/featherlb ## compile the single binary dist/featherlb

dist/featherlb: node_modules/.installed $(SRC) $(BPF_OBJ)
	$(BUN) build --compile --minify --sourcemap src/main.ts src/dataplane/proxy/worker.ts --outfile $@

typecheck: node_modules/.installed
	$(TSC) --noEmit -p .

# The integration tests run the compiled binary (FEATHERLB_BIN); without it they run `bun src/main.ts`.
test: node_modules/.installed $(TEST_PREREQS) ## run every test (installs what it needs; XDP tests need root)
	$(MAKE) typecheck
	$(MAKE) build
	FEATHERLB_BIN=dist/featherlb $(BUN) test $(BUN_TEST_FLAGS)

demo: dist/featherlb ## run featherlb + 3 demo backends on loopback, print how a short load spreads
	$(BUN) run test/demo/demo.ts

clean: ## remove build outputs
	rm -rf dist build

