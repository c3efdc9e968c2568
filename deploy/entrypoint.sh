#!/bin/sh
# The image's entrypoint: prepares the secrets that docker compose mounts as files (its
# `secrets:`, under /run/secrets), then runs the command. The secrets never appear in
# `docker inspect` or in the compose file.
#
# - WILDCHAT_IP_SALT and DAGSTER_PG_PASSWORD are read through Dagster's `env:` and EnvVar, so for
#   each, NAME_FILE names a file and NAME is exported with its content (less the trailing
#   newline), for the processes of this container only. An empty salt file stops the container:
#   a missing salt should stop `docker compose up`, not the first run hours later. An empty
#   password file exports an empty password (the instance config needs the variable set).
# - OPENAI_API_KEY_FILE is read by the `openai` resource itself, when a step runs, so the key is
#   never in any environment: it is left in place. An empty file unsets it: OpenAI moderation
#   does not run.
# NAME and NAME_FILE together are refused (which would win is not obvious), and so is a NAME_FILE
# that is not a readable file (what Docker mounts when the host file is missing).
set -eu

readable() {
  if [ ! -f "$2" ] || [ ! -r "$2" ]; then
    echo "wildchat-entrypoint: $1=$2 is not a readable file (uid $(id -u))" >&2
    exit 66
  fi
}

for name in WILDCHAT_IP_SALT DAGSTER_PG_PASSWORD; do
  file=$(printenv "${name}_FILE" || true)
  [ -n "$file" ] || continue
  if printenv "$name" >/dev/null; then
    echo "wildchat-entrypoint: both $name and ${name}_FILE are set; set only one" >&2
    exit 64
  fi
  readable "${name}_FILE" "$file"
  value=$(cat "$file")
  unset "${name}_FILE"
  if [ -z "$value" ] && [ "$name" = WILDCHAT_IP_SALT ]; then
    echo "wildchat-entrypoint: $file is empty: WILDCHAT_IP_SALT, the secret salt of hashed_ip," \
      "is required" >&2
    exit 65
  fi
  export "$name=$value"
done

if [ -n "${OPENAI_API_KEY_FILE:-}" ]; then
  if printenv OPENAI_API_KEY >/dev/null; then
    echo "wildchat-entrypoint: both OPENAI_API_KEY and OPENAI_API_KEY_FILE are set; set only one" >&2
    exit 64
  fi
  readable OPENAI_API_KEY_FILE "$OPENAI_API_KEY_FILE"
  if [ -z "$(tr -d '[:space:]' <"$OPENAI_API_KEY_FILE")" ]; then
    unset OPENAI_API_KEY_FILE
  fi
fi

exec "$@"
