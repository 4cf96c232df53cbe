# syntax=docker/dockerfile:1
# One image for the whole moocassets stack: the code server, dagster-webserver, dagster-daemon,
# the run containers started by the DockerRunLauncher, and the demo simulator.
#   docker compose build          (or: docker build -t moocassets:latest .)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home

# Unprivileged user; runs never need root.
RUN groupadd --system --gid 10001 dagster \
 && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --shell /usr/sbin/nologin dagster

WORKDIR /opt/dagster/app

# 1) Dependencies exactly as locked: every wheel pinned and hash-checked, nothing resolved.
#    Kept in its own layer so code changes do not reinstall the dependencies.
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock

# 2) The moocassets package itself (its dependencies are already installed from the lock).
COPY pyproject.toml README.md ./
COPY moocassets ./moocassets
RUN pip install --no-deps . \
 && rm -rf build moocassets.egg-info

# 3) Instance and workspace configuration. $DAGSTER_HOME/storage is where compute logs go;
#    compose mounts a named volume there (created with this owner).
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/app/workspace.yaml
RUN mkdir -p ${DAGSTER_HOME}/storage \
 && chown -R dagster:dagster ${DAGSTER_HOME}

USER dagster

EXPOSE 4000 3000
# Default command: the code server (gRPC) for the moocassets code location. The webserver and
# the daemon override it in docker-compose.yml; run containers get `dagster api execute_run`.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "moocassets.definitions", "--location-name", "moocassets"]
