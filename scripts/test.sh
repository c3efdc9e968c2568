#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
source "$REPO/scripts/_system_packages.sh"
ruff check wildchat_dag wildchat_dag_tests benchmarks
ruff format --check wildchat_dag wildchat_dag_tests benchmarks
python -m pytest "$@"
