#!/usr/bin/env bash
# Sourced by test.sh (or run on its own): the Debian packages the browser smoke test needs,
# wildchat_dag_tests/test_browser.py. Installs them when missing and we may; otherwise says
# that the test will skip. Never fails the caller: the test itself decides skip or fail (CI).
_system_packages() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  [ ${#missing[@]} -eq 0 ] && return 0

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "note: ${missing[*]} missing and not root: the browser smoke test will skip (fail under CI=true)" \
        "(install: sudo apt-get install -y --no-install-recommends chromium chromium-driver)" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "note: ${missing[*]} missing and no apt-get: the browser smoke test will skip" >&2
    return 0
  fi

  echo "Installing ${missing[*]} for the browser smoke test (apt-get install)..." >&2
  local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends chromium chromium-driver)
  # The package lists may be missing or stale (a fresh container): refresh them only then.
  if ! "${install[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
    "${install[@]}" >/dev/null 2>&1 ||
      echo "note: installing ${missing[*]} failed: the browser smoke test will skip" >&2
  fi
  return 0
}

_system_packages
