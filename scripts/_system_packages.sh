#!/usr/bin/env bash
# Sourced by test.sh (or run on its own): the Debian packages that the browser smoke test
# (wildchat_dag_tests/test_browser.py) and the authenticating-proxy test
# (test_faults_deployment.py: nginx, openssl) need. Installs them when missing and we may;
# otherwise says that those tests will skip. Never fails the caller: the test itself decides
# skip or fail (CI).
_system_packages() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  [ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0

  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "note: ${missing[*]} missing and not root: the browser and proxy tests will skip (fail under CI=true)" \
        "(install: sudo apt-get install -y --no-install-recommends ${missing[*]})" >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null; then
    echo "note: ${missing[*]} missing and no apt-get: the browser and proxy tests will skip" >&2
    return 0
  fi

  echo "Installing ${missing[*]} for the browser and proxy tests (apt-get install)..." >&2
  local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}")
  # The package lists may be missing or stale (a fresh container): refresh them only then.
  if ! "${install[@]}" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
    "${install[@]}" >/dev/null 2>&1 ||
      echo "note: installing ${missing[*]} failed: the browser and proxy tests will skip" >&2
  fi
  return 0
}

_system_packages
