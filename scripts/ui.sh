#!/usr/bin/env bash
# The Dagster UI (webserver and daemon) over the same instance and DuckDB file as the demo.
source "$(dirname "$0")/_env.sh"
exec dagster dev -w workspace.yaml "$@"
