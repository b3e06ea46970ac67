# The e2e load client (test/e2e/client), plus `ip` to give itself extra source addresses.
FROM scratch
COPY rootfs/ /
LABEL org.featherlb.e2e="1"
ENTRYPOINT ["/usr/local/bin/featherlb-e2e-client"]
