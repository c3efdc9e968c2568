# One image for the Dagster services of docker-compose.yml: the code location's gRPC server (the
# default command), the operator webserver, the read-only viewer webserver and the daemon (which
# override it).
#
# The base image is pinned to an exact version. To pin it by digest as well, look the digest up
# where you build (`docker buildx imagetools inspect python:3.11.13-slim-bookworm`) and write
# `FROM python:3.11.13-slim-bookworm@sha256:<digest>`.
FROM python:3.11.13-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
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

# Installed editable, with pyproject.toml beside the package: the code location loads
# wildchat_dag/defs/ with load_from_defs_folder, which finds the project by its pyproject.toml
# ([tool.dg]), as Dagster's own project images do. Not in the working directory: `dagster api
# grpc` puts its working directory on sys.path.
COPY pyproject.toml README.md /opt/dagster/project/
COPY wildchat_dag /opt/dagster/project/wildchat_dag
RUN pip install -e /opt/dagster/project

# The unprivileged user every Dagster service runs as, with a fixed uid/gid (10001) so that
# volumes and secret files can be given to it. It owns only what it writes: the data folder,
# the compute logs and its home (models downloaded at run time, DuckDB's extensions). Created here, before the
# VOLUME line and the compose volumes, so that new named volumes start owned by it.
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/dagster --create-home \
       --shell /usr/sbin/nologin dagster \
    && mkdir -p /data /opt/dagster/dagster_home/storage /home/dagster/.cache \
    && chown dagster:dagster /data /opt/dagster/dagster_home/storage /home/dagster/.cache

# The instance (PostgreSQL through the DAGSTER_PG_* variables), the gRPC workspace of the
# webservers and daemon, and the entrypoint that reads the secrets from their files. Owned by
# root and not writable by the services.
COPY deploy/dagster.postgres.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.grpc.yaml /opt/dagster/app/workspace.grpc.yaml
COPY deploy/entrypoint.sh /usr/local/bin/wildchat-entrypoint
RUN chmod 0755 /usr/local/bin/wildchat-entrypoint
WORKDIR /opt/dagster/app

# Logs, the DuckDB file and the releases: state that must outlive the container.
VOLUME ["/data"]

USER 10001:10001
EXPOSE 4000 3000
# Exports WILDCHAT_IP_SALT, DAGSTER_PG_PASSWORD and OPENAI_API_KEY from the files named by their
# *_FILE variables (Docker secrets), then runs the command.
ENTRYPOINT ["/usr/local/bin/wildchat-entrypoint"]
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "wildchat_dag.definitions"]
