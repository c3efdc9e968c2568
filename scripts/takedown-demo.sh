#!/usr/bin/env bash
# After scripts/demo.sh: two takedown requests added, applied, and the releases' changelog.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
export WILDCHAT_MODE="${WILDCHAT_MODE:-demo}"
python -m wildchat_dag.takedown_demo "$@"
