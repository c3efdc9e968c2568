#!/usr/bin/env bash
# Set up (first run only) and run the demo: sample logs for a few days, then the daily job.
source "$(dirname "$0")/_env.sh"
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
python -m wildchat_dag.demo "$@"
