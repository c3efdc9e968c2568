#!/usr/bin/env bash
# The Dagster UI (webserver and daemon) over the same instance and DuckDB file as the demo.
# The UI has no authentication and can launch runs with any config: it listens on the loopback
# interface only (127.0.0.1:3000), unless a host is passed (`-h`/`--host`). Reach it from another
# machine through an SSH tunnel (`ssh -L 3000:127.0.0.1:3000 <host>`), not by binding 0.0.0.0.
source "$(dirname "$0")/_env.sh"
# Demo mode: the demo's per-install IP salt, unless WILDCHAT_IP_SALT is set.
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
host=(-h 127.0.0.1)
for arg in "$@"; do
  case "$arg" in
    -h | --host | --host=* | --dagit-host | --dagit-host=*) host=() ;;
  esac
done
exec dagster dev "${host[@]}" -w workspace.yaml "$@"
