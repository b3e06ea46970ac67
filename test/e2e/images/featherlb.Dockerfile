# featherlb alone: the compiled binary and the glibc pieces `ldd` names (staged by test/e2e/rootfs.sh).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/local/bin/featherlb"]
CMD ["/etc/featherlb/lb.yaml"]
