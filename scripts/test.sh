#!/usr/bin/env bash
# Set up (first run only) and run the whole test suite. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_env.sh
source "$REPO/scripts/_system_packages.sh"
ruff check wildchat_dag wildchat_dag_tests benchmarks
ruff format --check wildchat_dag wildchat_dag_tests benchmarks
# Two workers (pytest-xdist): the end-to-end tests spend much of their time waiting on the
# processes they start, and the other worker runs the rest meanwhile. WILDCHAT_TEST_WORKERS=0
# runs everything in this process, as plain pytest does.
python -m pytest -n "${WILDCHAT_TEST_WORKERS:-2}" --dist worksteal "$@"
