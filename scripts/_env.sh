# The project venv (installed from pyproject.toml the first time, and again when it changes)
# and the Dagster home. Sourced by the other scripts, and by hand: `source scripts/_env.sh`.
#
# Sourced into an interactive shell, it must leave that shell as it found it: no `set -e`, `-u`
# or pipefail (the next failing command would close the terminal), no change of directory, and
# `return`, never `exit`, on error. So nothing here relies on errexit (each step checks its own
# status), and the scripts set their strict mode themselves. It sets REPO, the checkout's root,
# for the scripts, and exports WILDCHAT_HOME, DAGSTER_HOME, VIRTUAL_ENV and PATH.

_wildchat_env() {
  local repo="$1" python="${PYTHON:-python3}" digest stamp
  if [ ! -x "$repo/.venv/bin/python" ]; then
    "$python" -m venv "$repo/.venv" || return 1
  fi
  digest="$(sha256sum "$repo/pyproject.toml")" || return 1
  stamp="$repo/.venv/.installed-${digest:0:16}"
  if [ ! -f "$stamp" ]; then
    "$repo/.venv/bin/python" -m pip install --quiet --upgrade pip || return 1
    "$repo/.venv/bin/python" -m pip install --quiet -e "$repo[dev]" || return 1
    touch "$stamp" || return 1
  fi
  export WILDCHAT_HOME="${WILDCHAT_HOME:-$repo/.wildchat}"
  export DAGSTER_HOME="${DAGSTER_HOME:-$WILDCHAT_HOME/dagster_home}"
  mkdir -p "$DAGSTER_HOME" || return 1
  cp "$repo/dagster.yaml" "$DAGSTER_HOME/dagster.yaml" || return 1
  # dg checks that the active venv is the project's.
  export VIRTUAL_ENV="$repo/.venv"
  # Sourced twice, the venv is still on PATH once.
  case ":$PATH:" in
    *":$repo/.venv/bin:"*) ;;
    *) export PATH="$repo/.venv/bin:$PATH" ;;
  esac
}

# A command substitution runs in a subshell: its cd does not reach the caller.
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
if ! _wildchat_env "$REPO"; then
  unset -f _wildchat_env
  echo "scripts/_env.sh: setting up $REPO/.venv or \$DAGSTER_HOME failed" >&2
  return 1
fi
unset -f _wildchat_env
