# For machines with Docker but no Node.js/Bun: builds featherlb, the e2e backend and client inside
# Docker and produces the same three FROM-scratch images as the host path. `make e2e` uses it by itself
# when npm is missing (or with E2E_BUILD=docker). It needs a registry to pull the Bun image and Debian
# packages, so it could not be tested where this was written (no registry reachable there).
#
#   tar -c --exclude=./node_modules --exclude=./dist --exclude=./build --exclude=./.git . \
#     | docker build -f test/e2e/images/builder.Dockerfile --target lb -t featherlb:e2e -
ARG BUN_IMAGE=oven/bun:1.4.5-debian

FROM ${BUN_IMAGE} AS build
# clang/libbpf: the XDP object embedded in the binary (bpf/bpf.mk); iproute2: `ip` for the client image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make clang llvm libbpf-dev libelf-dev zlib1g-dev linux-libc-dev iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The Makefile installs with npm; here Bun installs from package-lock.json and make is told it is done.
RUN bun install --frozen-lockfile || bun install
RUN mkdir -p node_modules build && touch node_modules/.installed build/.bpf-deps \
 && make build BUN=bun \
 && bun build --compile --minify test/e2e/backend/main.ts --outfile build/e2e/bin/featherlb-e2e-backend \
 && bun build --compile --minify test/e2e/client/main.ts --outfile build/e2e/bin/featherlb-e2e-client \
 && bash test/e2e/rootfs.sh /out/lb dist/featherlb "$(command -v ip)=/usr/sbin/ip" \
 && bash test/e2e/rootfs.sh /out/backend build/e2e/bin/featherlb-e2e-backend dist/featherlb "$(command -v ip)=/usr/sbin/ip" \
 && bash test/e2e/rootfs.sh /out/client build/e2e/bin/featherlb-e2e-client "$(command -v ip)=/usr/sbin/ip"

FROM scratch AS lb
COPY --from=build /out/lb/ /
LABEL org.featherlb.e2e="1"
ENTRYPOINT ["/usr/local/bin/featherlb"]
CMD ["/etc/featherlb/lb.yaml"]

FROM scratch AS backend
COPY --from=build /out/backend/ /
LABEL org.featherlb.e2e="1"
ENV PORT=7000
EXPOSE 7000
ENTRYPOINT ["/usr/local/bin/featherlb-e2e-backend"]

FROM scratch AS client
COPY --from=build /out/client/ /
LABEL org.featherlb.e2e="1"
ENTRYPOINT ["/usr/local/bin/featherlb-e2e-client"]
