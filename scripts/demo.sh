#!/usr/bin/env bash
# Set up (first run only) and run the demo: sample logs for a few days, then the daily job.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
python -m wildchat_dag.demo "$@"
