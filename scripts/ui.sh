#!/usr/bin/env bash
# The Dagster UI (`dg dev`: webserver and daemon) over the same instance and DuckDB file as the
# demo.
# The UI has no authentication and can launch runs with any config: it listens on the loopback
# interface only (127.0.0.1:3000), unless a host is passed (`-h`/`--host`). Reach it from another
# machine through an SSH tunnel (`ssh -L 3000:127.0.0.1:3000 <host>`), not by binding 0.0.0.0.
# Ctrl-C, SIGINT or SIGTERM (`kill %1`, `kill <pid>`) stops it with the webserver, the daemon and
# the code servers, also when it was started in the background (`bash scripts/ui.sh &`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
# Demo mode: the demo's per-install IP salt, unless WILDCHAT_IP_SALT is set, and the demo's days
# as the partitions.
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
host=(-h 127.0.0.1)
for arg in "$@"; do
  case "$arg" in
    -h | --host | --host=* | --dagit-host | --dagit-host=*) host=() ;;
  esac
done
ui=(dg dev "${host[@]}" -w "$REPO/workspace.yaml" "$@")
# From the instance's own folder: started where the project's dagster.yaml template lies, the
# command warns that that file is ignored (it is: _env.sh copied it to $DAGSTER_HOME).
cd "$DAGSTER_HOME"

# A command started with `&` by a shell without job control (a script, `bash -c`) begins with
# SIGINT ignored, and bash cannot undo that for itself. dagster dev would inherit it, and it
# handles SIGTERM as it handles SIGINT, so it would ignore SIGTERM too; so would the webserver
# and the daemon, which it stops by making them send themselves SIGINT. A small Python exec
# restores SIGINT's default first: then the process this script becomes (the pid `kill` is
# given) shuts all of them down on either signal.
exec python3 -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])
' "${ui[@]}"
