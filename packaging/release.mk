# `make release`, `make release-test`, `make image` (docs/release.md). Included by the top Makefile;
# also owns build/commit, the git commit every build embeds (src/version.ts).

VERSION := $(shell sed -n 's/^  "version": "\([^"]*\)".*/\1/p' package.json)
RELEASE_TARGETS := linux-x64 linux-x64-baseline linux-arm64
RELEASE_DIR := dist/release
REL := build/release
# Debian architecture of a release target.
deb_arch = $(if $(findstring arm64,$(1)),arm64,amd64)
# The binary each .deb carries: Debian's amd64 promises only the x86-64 baseline (no AVX2).
DEB_BINARY_amd64 := linux-x64-baseline
DEB_BINARY_arm64 := linux-arm64

RELEASE_TARBALLS := $(foreach t,$(RELEASE_TARGETS),$(RELEASE_DIR)/featherlb-$(VERSION)-$(t).tar.gz)
RELEASE_DEBS := $(RELEASE_DIR)/featherlb_$(VERSION)_amd64.deb $(RELEASE_DIR)/featherlb_$(VERSION)_arm64.deb
RELEASE_FILES := $(RELEASE_TARBALLS) $(RELEASE_DEBS)
PACKAGED_DOCS := config/lb.yaml README.md LICENSE packaging/featherlb.service

.PHONY: release release-test image FORCE
FORCE:

# 12 hex digits, "-dirty" with uncommitted changes to tracked files, "unknown" outside git. Rewritten
# only when it changes, so a new commit rebuilds the binaries and nothing else does.
build/commit: FORCE
	@mkdir -p $(@D); c=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	  [ "$$c" = unknown ] || [ -z "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || c=$$c-dirty; \
	  [ "$$(cat $@ 2>/dev/null)" = "$$c" ] || echo "$$c" > $@

$(REL)/bun/%/bun: packaging/bun-runtimes.txt packaging/fetch-bun.sh package.json
	bash packaging/fetch-bun.sh $* $@

$(REL)/lib/%/.done: packaging/target-libs.sh build/.bpf-deps
	bash packaging/target-libs.sh $* $(@D)
	@touch $@

define release_target
$(REL)/bin/$(1)/featherlb: $(REL)/bun/$(1)/bun $(REL)/lib/$(call deb_arch,$(1))/.done packaging/build.ts node_modules/.installed $(SRC) $(BPF_OBJ) build/commit
	$(BUN) packaging/build.ts $(1) $$@ $(REL)/bun/$(1)/bun $(REL)/lib/$(call deb_arch,$(1)) "$$$$(cat build/commit)" $$(ENTRYPOINTS)

$(RELEASE_DIR)/featherlb-$(VERSION)-$(1).tar.gz: $(REL)/bin/$(1)/featherlb packaging/mktar.sh $(PACKAGED_DOCS)
	bash packaging/mktar.sh $(1) $$< $(VERSION) $(RELEASE_DIR)
endef
$(foreach t,$(RELEASE_TARGETS),$(eval $(call release_target,$(t))))

define release_deb
$(RELEASE_DIR)/featherlb_$(VERSION)_$(1).deb: $(REL)/bin/$(DEB_BINARY_$(1))/featherlb packaging/mkdeb.sh $(wildcard packaging/deb/*) $(PACKAGED_DOCS)
	bash packaging/mkdeb.sh $(1) $$< $(VERSION) $(RELEASE_DIR)
endef
$(foreach a,amd64 arm64,$(eval $(call release_deb,$(a))))

$(RELEASE_DIR)/SHA256SUMS: $(RELEASE_FILES)
	cd $(RELEASE_DIR) && sha256sum $(notdir $(RELEASE_FILES)) > SHA256SUMS

release: $(RELEASE_DIR)/SHA256SUMS ## tarballs (x64, x64-baseline, arm64), .debs (amd64, arm64), SHA256SUMS → dist/release/
	@# Files of other versions would not be in SHA256SUMS: nothing else stays in the directory.
	@find $(RELEASE_DIR) -maxdepth 1 -type f $(foreach f,$(RELEASE_FILES) $(RELEASE_DIR)/SHA256SUMS,! -name $(notdir $(f))) -delete
	@echo "release $(VERSION) (commit $$(cat build/commit)):"
	@cd $(RELEASE_DIR) && for f in $(notdir $(RELEASE_FILES)) SHA256SUMS; do \
	  awk -v f="$(RELEASE_DIR)/$$f" -v s=$$(stat -c %s $$f) 'BEGIN { printf "  %-56s %7.1f MB\n", f, s / 1e6 }'; done

# ------------------------------------------------------------------------------------ release-test
RT := build/release-test
RELEASE_TEST_PKGS := qemu-user-static debootstrap systemd-container clang llvm

build/.release-test-deps:
	@missing=$$(for p in $(RELEASE_TEST_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  [ "$$(id -u)" = 0 ] || { echo "release-test needs: apt-get install $$missing (as root)" >&2; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@mkdir -p build && touch $@

# arm64's glibc (qemu-aarch64-static -L) and kernel headers (the BPF object check).
$(RT)/arm64/.done: packaging/target-libs.sh
	bash packaging/target-libs.sh arm64 $(@D) libc6 linux-libc-dev
	@touch $@

$(RT)/debroot/.featherlb-debroot: test/release/debroot.sh build/.release-test-deps
	bash test/release/debroot.sh $(RT)/debroot

release-test: release build/.release-test-deps $(RT)/arm64/.done $(RT)/debroot/.featherlb-debroot ## check dist/release/ as a user would (root; qemu for arm64, a debootstrapped root for the .deb)
	$(BUN) test ./test/release/release.check.ts

# --------------------------------------------------------------------------------------------- image
# The host architecture's release binary (amd64: the baseline build, as in the .deb).
IMAGE_TARGET := $(if $(filter aarch64 arm64,$(shell uname -m)),linux-arm64,linux-x64-baseline)

image: $(REL)/bin/$(IMAGE_TARGET)/featherlb packaging/Dockerfile packaging/mkimage.sh test/e2e/rootfs.sh config/lb.yaml ## the release image featherlb:<version>, FROM scratch (needs Docker)
	bash packaging/mkimage.sh $< $(VERSION)
