#!/usr/bin/env bash
# The Dagster UI (webserver and daemon) over the same instance and DuckDB file as the demo.
source "$(dirname "$0")/_env.sh"
# Demo mode: the demo's per-install IP salt, unless WILDCHAT_IP_SALT is set.
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
exec dagster dev -w workspace.yaml "$@"
