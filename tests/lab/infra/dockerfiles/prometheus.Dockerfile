# swarmguard-lab/prometheus:latest: the stack's Prometheus in the lab, where no registry
# (hence no prom/prometheus image) is reachable. Built by tests/lab/infra/stack.py
# (build_monitoring_images) from the Debian package's binary on the lab's busybox image.
#
# The build context the lab prepares (a temporary directory):
#   prometheus.Dockerfile                       this file
#   rootfs/bin/prometheus                       /usr/bin/prometheus of Debian's `prometheus`
#   rootfs/lib/x86_64-linux-gnu/libc.so.6       the shared libraries `ldd` lists for it,
#   rootfs/lib64/ld-linux-x86-64.so.2             at the paths ldd names: Debian builds it
#                                                 with cgo, so it is NOT static and needs
#                                                 glibc, which busybox lacks
# i.e. rootfs/ mirrors where each file lives on the host, and is copied over / whole.
# Not included: Debian's web UI assets (/usr/share/prometheus/web, symlinks into
# /usr/share/javascript that come to 200+ MB). The HTTP API, which the lab tests use,
# works without them; the UI pages do not (use the lab's own Prometheus UI instead).
#
# The layout and command line follow prom/prometheus (binary /bin/prometheus, config
# /etc/prometheus/prometheus.yml, data /prometheus, user nobody), so stack.yml's
# `command:`, `configs:` and volume work unchanged on either image.
ARG BASE_IMAGE=swarmguard-lab/busybox:latest
FROM ${BASE_IMAGE}
COPY rootfs/ /
RUN mkdir -p /etc/prometheus /prometheus && chown 65534:65534 /prometheus \
    && /bin/prometheus --version
USER 65534
EXPOSE 9090
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
