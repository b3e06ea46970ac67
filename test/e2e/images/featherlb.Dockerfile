# featherlb: the compiled binary and the glibc pieces `ldd` names, plus `ip` (the XDP data plane asks it
# for routes and neighbours) and its libraries; staged by test/e2e/rootfs.sh.
FROM scratch
COPY rootfs/ /
LABEL org.featherlb.e2e="1"
ENTRYPOINT ["/usr/local/bin/featherlb"]
CMD ["/etc/featherlb/lb.yaml"]
