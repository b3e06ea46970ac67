# `make e2e`: the load test of featherlb in Docker (docs/e2e.md). Included by the top Makefile.
#
# The modes to run, in order (`make e2e E2E_MODES=proxy` skips xdp, e.g. on a kernel without XDP).
E2E_MODES ?= proxy xdp
# host: compile with this checkout's Bun (needs npm for `make deps`), as CI does; docker: build
# everything inside Docker (test/e2e/images/builder.Dockerfile) for machines with Docker only.
E2E_BUILD ?= $(if $(shell command -v npm 2>/dev/null),host,docker)

E2E_BIN := build/e2e/bin
E2E_TS := $(shell find test/e2e test/support src -name '*.ts' -not -name '*.test.ts' 2>/dev/null)
E2E_BINARIES := $(E2E_BIN)/featherlb-e2e-backend $(E2E_BIN)/featherlb-e2e-client

.PHONY: e2e e2e-images e2e-down e2e-bins

e2e: ## load-test featherlb in Docker (all algorithms, fault injection); log in test/e2e/runs/
	@E2E_MODES="$(E2E_MODES)" E2E_BUILD="$(E2E_BUILD)" MAKE="$(MAKE)" bash test/e2e/run.sh

e2e-down: ## stop and remove what `make e2e` started (containers, network)
	@bash test/e2e/run.sh --down

e2e-bins: $(E2E_BINARIES)

$(E2E_BIN)/featherlb-e2e-%: node_modules/.installed $(E2E_TS)
	@mkdir -p $(@D)
	$(BUN) build --compile --minify test/e2e/$*/main.ts --outfile $@

# The three FROM-scratch images; run.sh calls this (timed) so `make e2e` is one command.
ifeq ($(E2E_BUILD),host)
e2e-images: dist/featherlb $(E2E_BINARIES)
	bash test/e2e/images.sh host
else
e2e-images:
	bash test/e2e/images.sh docker
endif
