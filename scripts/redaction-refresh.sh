#!/usr/bin/env bash
# After a redaction rule changed: re-apply the rules to every day, re-using stored detections.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
python -m wildchat_dag.redaction_refresh "$@"
