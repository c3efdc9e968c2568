# Sourced by the other scripts: a project venv, installed from pyproject.toml, and the Dagster home.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
export WILDCHAT_HOME="${WILDCHAT_HOME:-$REPO/.wildchat}"
export DAGSTER_HOME="${DAGSTER_HOME:-$WILDCHAT_HOME/dagster_home}"
mkdir -p "$DAGSTER_HOME"
cp "$REPO/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
export PATH="$REPO/.venv/bin:$PATH"
