#!/usr/bin/env bash
# Set up (first run only) and run the demo: sample logs for a few days, then the daily job.
source "$(dirname "$0")/_env.sh"
python -m wildchat_dag.demo "$@"
