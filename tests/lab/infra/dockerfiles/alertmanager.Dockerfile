# swarmguard-lab/alertmanager:latest: the stack's Alertmanager in the lab, where no
# registry (hence no prom/alertmanager image) is reachable. Built by tests/lab/infra/stack.py
# (build_monitoring_images) from the Debian package's binary on the lab's busybox image.
#
# The build context the lab prepares (a temporary directory):
#   alertmanager.Dockerfile                     this file
#   rootfs/bin/alertmanager                     /usr/bin/prometheus-alertmanager of
#                                                 Debian's `prometheus-alertmanager`
#   rootfs/lib/x86_64-linux-gnu/libc.so.6       the shared libraries `ldd` lists for it,
#   rootfs/lib64/ld-linux-x86-64.so.2             at the paths ldd names (cgo: needs glibc)
#   rootfs/usr/share/prometheus/alertmanager/   the package's templates and UI. Required:
#                                                 Debian's build loads default.tmpl from
#                                                 there (upstream embeds it), and without
#                                                 it every config load fails and
#                                                 Alertmanager exits
# i.e. rootfs/ mirrors where each file lives on the host, and is copied over / whole.
#
# The layout and command line follow prom/alertmanager (binary /bin/alertmanager, config
# /etc/alertmanager/alertmanager.yml, data /alertmanager, user nobody), so stack.yml's
# `command:`, `configs:`, secret and volume work unchanged on either image.
ARG BASE_IMAGE=swarmguard-lab/busybox:latest
FROM ${BASE_IMAGE}
COPY rootfs/ /
RUN mkdir -p /etc/alertmanager /alertmanager && chown 65534:65534 /alertmanager \
    && /bin/alertmanager --version
USER 65534
EXPOSE 9093
WORKDIR /alertmanager
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"]
