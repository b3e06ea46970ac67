# The e2e backend (test/e2e/backend): greets with BACKEND_ID, echoes, holds on request.
FROM scratch
COPY rootfs/ /
LABEL org.featherlb.e2e="1"
ENV PORT=7000
EXPOSE 7000
ENTRYPOINT ["/usr/local/bin/featherlb-e2e-backend"]
