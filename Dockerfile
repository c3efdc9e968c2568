# One image for the three Dagster services of docker-compose.yml: the code location's gRPC
# server (the default command), the webserver and the daemon (which override it).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    WILDCHAT_HOME=/data \
    DAGSTER_GRPC_HOST=user_code \
    DAGSTER_GRPC_PORT=4000

# The CPU build of the torch version pyproject.toml pins, first: detoxify would otherwise pull
# the default CUDA build, several GB the image has no GPU for. `pip install .` then finds the
# pin satisfied (2.13.0+cpu matches ==2.13.0). A layer of its own, so code changes reuse it.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Installed from a scratch folder, not the working directory: `dagster api grpc` puts its working
# directory on sys.path, and a source tree there would shadow the installed package.
COPY pyproject.toml README.md /tmp/build/
COPY wildchat_dag /tmp/build/wildchat_dag
# The default redaction rules come with the package (package data in pyproject.toml).
RUN pip install /tmp/build && rm -rf /tmp/build

# The instance (PostgreSQL through the DAGSTER_PG_* variables) and the gRPC workspace of the
# webserver and daemon.
COPY deploy/dagster.postgres.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.grpc.yaml /opt/dagster/app/workspace.grpc.yaml
WORKDIR /opt/dagster/app

# Logs, the DuckDB file and the releases: state that must outlive the container.
VOLUME ["/data"]

EXPOSE 4000 3000
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "wildchat_dag.definitions"]
