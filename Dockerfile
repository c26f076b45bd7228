# Netværket calendar aggregator.
#
#   docker build -t aggregator .
#   docker run --rm -p 8080:8080 -v aggregator-data:/data aggregator
#
# The image serves the bundled demo network (sources.yaml + examples/feeds).
# Serve your own network by mounting a config over it:
#   docker run ... -v "$PWD/my-sources.yaml:/app/sources.yaml:ro" aggregator

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app

# Unprivileged user (uid/gid 10001) that owns only the data directory.
RUN groupadd --system --gid 10001 aggregator \
    && useradd --system --uid 10001 --gid aggregator --home-dir /app \
       --no-create-home --shell /usr/sbin/nologin aggregator \
    && mkdir -p /data \
    && chown aggregator:aggregator /data

# Install the package and its dependencies. This layer stays cached while only
# the config or the demo feeds change.
COPY pyproject.toml README.md ./
COPY aggregator ./aggregator
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

# Demo configuration; relative paths in it are resolved against /app.
COPY sources.yaml ./
COPY examples ./examples

ENV AGGREGATOR_DATABASE_URL=sqlite+aiosqlite:////data/aggregator.db \
    AGGREGATOR_PUBLISHED=/data/published \
    AGGREGATOR_CONFIG=/app/sources.yaml

VOLUME /data
EXPOSE 8080

# The "aggregator" user, by number so that runtimes (e.g. Kubernetes
# runAsNonRoot) can check that it is not root.
USER 10001:10001

# python:*-slim has no curl or wget, so use the standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

CMD ["aggregator", "serve", "--host", "0.0.0.0", "--port", "8080"]
