# The meshfed image: one image for servers (`meshfed agent`) and mesh gateways (`meshfed gateway`).
#
#   docker build -t meshfed:0.1.0 .
#
# Stage 1 builds wheels of meshfed and of every dependency (pysyncobj only ships a source
# archive), so the final image needs no compiler and no build tools, only the wheels.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fsm ./fsm
COPY rpc ./rpc
COPY replication ./replication
COPY server ./server
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A fixed uid/gid, the one the Kubernetes manifests run as (runAsUser 10001), so files on
# volumes keep one owner whichever way the container is started.
RUN groupadd --system --gid 10001 meshfed \
 && useradd --system --uid 10001 --gid meshfed --no-create-home --home-dir /var/lib/meshfed \
      --shell /usr/sbin/nologin meshfed \
 && install -d -o meshfed -g meshfed -m 0750 /var/lib/meshfed
# The wheels are mounted for this one step rather than copied, so they take no layer
# (RUN --mount needs BuildKit, the default builder since Docker 23).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels meshfed
USER 10001:10001
WORKDIR /var/lib/meshfed
VOLUME ["/var/lib/meshfed"]
# HTTP API and metrics, server RPC, Raft; a gateway uses 8443 (traffic) and 8444 (admin).
EXPOSE 8500 8300 8301 8443 8444
# Healthy = the server's HTTP API answers its status endpoint; Python's stdlib, no curl in the
# image. A server without a leader is still healthy: restarting it would not bring a leader
# back. A gateway container has no API on 8500: run it with --no-healthcheck (Kubernetes
# ignores HEALTHCHECK and uses the manifests' probes).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8500/v1/status/leader', timeout=4)"]
ENTRYPOINT ["meshfed"]
CMD ["agent", "-config-dir", "/etc/meshfed.d"]
