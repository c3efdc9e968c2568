#!/usr/bin/env bash
# The review app (python -m wildchat_dag.browse) over the demo's release, its search index and,
# for the redaction review, its warehouse: http://127.0.0.1:8765. It listens on the loopback
# interface only unless --host is passed: the review pages read the warehouse. Arguments go to
# the app: --release full, --port N, --rules NAME=PATH (another rules version to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
exec python -m wildchat_dag.browse "$@"
