# `make bench`: featherlb against HAProxy, NGINX and a direct connection (test/bench/run.sh), then
# docs/benchmarks.md + docs/benchmarks.svg. Root only (network namespaces); about 10 minutes on
# 2 cores. Not part of `make test` / CI. Knobs are passed through, e.g.
#   make bench BENCH_REPS=1 BENCH_SYSTEMS="direct haproxy"
# BENCH_XDP: the featherlb xdp row. auto = try it and mark it unavailable if the binary refuses.
BENCH_XDP ?= auto
BENCH_PKGS := haproxy nginx libnginx-mod-stream wrk gcc clang ethtool iproute2 jq hping3

# `make test` runs test/bench/rows.test.ts, which drives run.sh's JSON writers (lib/rows.sh): they need
# jq. Installed as root like the XDP test packages; without root the message says what to install.
TEST_PREREQS += build/.bench-test-deps
build/.bench-test-deps:
	@command -v jq >/dev/null || { [ "$$(id -u)" = 0 ] || { echo "make test needs jq (apt-get install jq)" >&2; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq; }
	@mkdir -p build && touch $@

.PHONY: bench bench-deps bench-report bench-profile bench-scale bench-hostile bench-handover bench-sockmap

bench-deps: ## install the benchmark's Debian packages (idempotent)
	@missing=$$(for p in $(BENCH_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "bench: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# the distribution starts these as services on install; the bench runs its own instances
	@for s in haproxy nginx; do systemctl is-active --quiet $$s 2>/dev/null && systemctl stop $$s || true; done

bench: bench-deps node_modules/.installed ## benchmark vs HAProxy/NGINX/direct, then the cost curves (10 … 10,000 backends) → docs/benchmarks.md (root, ~15 min)
	@start=$$(date +%s); \
	if $(MAKE) --no-print-directory build; then :; else echo "bench: featherlb did not build; its rows will be marked unavailable"; fi; \
	BENCH_XDP=$(BENCH_XDP) bash test/bench/run.sh && \
	BENCH_XDP=$(BENCH_XDP) bash test/bench/run.sh scale && \
	$(BUN) run test/bench/report.ts build/bench/results.jsonl --scale build/bench/scale.jsonl --elapsed $$(( $$(date +%s) - start ))

bench-scale: node_modules/.installed ## only the cost curves: 10 … 10,000 backends, both modes → docs/benchmarks.md scale section + docs/benchmarks-scale.svg (root, ~2 min)
	$(MAKE) --no-print-directory build
	BENCH_XDP=$(BENCH_XDP) bash test/bench/run.sh scale
	$(BUN) run test/bench/report.ts --scale build/bench/scale.jsonl

bench-report: ## re-render docs/benchmarks.md + .svg from the last build/bench/results.jsonl (and scale.jsonl)
	$(BUN) run test/bench/report.ts build/bench/results.jsonl $$([ -f build/bench/scale.jsonl ] && echo --scale build/bench/scale.jsonl)

# `make bench-hostile`: the XDP data plane under hostile traffic at the sizes of issue 11 (a 10 s spoofed
# SYN flood, 10,000 blind RSTs, a 20,000-connection soak, SYNs nobody may accept), with the program's
# ns/packet (bpf_stats) and CPU: test/xdp/hostile.ts. Root only; about 2 minutes. Pick scenarios with
# HOSTILE="flood rst"; HOSTILE_ARGS=--ci runs the CI sizes.
HOSTILE ?=
bench-hostile: bench-deps node_modules/.installed build/.bpf-deps ## XDP plane vs SYN flood, blind RSTs, soak; prints figures (root, ~2 min)
	$(MAKE) --no-print-directory build
	FEATHERLB_BIN=dist/featherlb $(BUN) test/xdp/hostile.ts $(HOSTILE_ARGS) $(HOSTILE)

# `make bench-handover`: test/xdp/handover.test.ts's upgrade and crash case (300 connections echoing every
# 200 ms: SIGUSR2 then a new start, SIGKILL then a start) HANDOVER_ROUNDS times, each printing its figures
# (resets, lost bytes, longest stall, restart time, flows kept) with the load average. Root; ~15 s a round.
HANDOVER_ROUNDS ?= 5
bench-handover: node_modules/.installed build/.bpf-deps ## XDP upgrade (SIGUSR2) and crash restart: stalls and flows kept, HANDOVER_ROUNDS times (root)
	$(MAKE) --no-print-directory build
	@for i in $$(seq $(HANDOVER_ROUNDS)); do \
	  FEATHERLB_BIN=dist/featherlb $(BUN) test test/xdp/handover.test.ts -t "300 connections" 2>&1 | grep -E "handover figures|^\(fail\)|^error" ; \
	done

# `make bench-sockmap`: the experiment behind kernel_relay's choice of splice(2) over an eBPF sockmap
# (test/bench/tools/sockmap-relay.ts): throughput and backpressure of a sockmap relay against a JavaScript
# one, on loopback. Root; about a minute. Prints JSON lines.
bench-sockmap: node_modules/.installed build/.bpf-deps ## the sockmap relay experiment (why kernel_relay uses splice): throughput, backpressure (root, ~1 min)
	@mkdir -p build/bench
	$(BPF_CLANG) $(BPF_CFLAGS) -c test/bench/tools/sockmap_relay.bpf.c -o build/bench/sockmap_relay.bpf.o
	$(BUN) test/bench/tools/sockmap-relay.ts build/bench/sockmap_relay.bpf.o

bench-profile: bench-deps node_modules/.installed ## profile featherlb proxy per workload (Bun --cpu-prof + perf) → build/bench/profile
	bash test/bench/run.sh profile
