# featherlb BPF object + the shared libraries embedded in the binary (owned by the XDP data plane).
# The top Makefile includes this before its rules: BPF_OBJ and TEST_PREREQS are prerequisites of
# `make build` / `make test`.

BPF_CLANG ?= clang
BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -Wall -Werror -I/usr/include/$(shell uname -m)-linux-gnu
BPF_SRCS := $(wildcard bpf/*.h) bpf/featherlb.bpf.c
LIB_DIR := /usr/lib/$(shell uname -m)-linux-gnu
# libbpf needs libelf and libz; the loader dlopens them in that order (libz, libelf, libbpf).
BPF_LIBS := build/lib/libz.so.1 build/lib/libelf.so.1 build/lib/libbpf.so.1

BPF_OBJ += build/bpf/featherlb.bpf.o $(BPF_LIBS)
TEST_PREREQS += build/.bpf-deps build/bpf/featherlb.bpf.o build/bpf/xdp_pass.bpf.o $(BPF_LIBS)

.PHONY: bpf bpf-deps
bpf: build/bpf/featherlb.bpf.o build/bpf/xdp_pass.bpf.o $(BPF_LIBS) ## compile the XDP program and collect its shared libraries

bpf-deps: build/.bpf-deps ## install the Debian packages the XDP data plane builds and tests with

build/.bpf-deps: bpf/install-deps.sh
	bash bpf/install-deps.sh
	@mkdir -p build && touch $@

build/bpf/featherlb.bpf.o: $(BPF_SRCS) build/.bpf-deps
	@mkdir -p $(@D)
	$(BPF_CLANG) $(BPF_CFLAGS) -c bpf/featherlb.bpf.c -o $@

# TEST ONLY: a pass-everything program for the peer veth in the native-mode netns test.
build/bpf/xdp_pass.bpf.o: bpf/test/xdp_pass.bpf.c build/.bpf-deps
	@mkdir -p $(@D)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

# Copy the real files (not the symlinks) under their sonames.
build/lib/%.so.1: build/.bpf-deps
	@mkdir -p $(@D)
	cp -L $(LIB_DIR)/$*.so.1 $@
