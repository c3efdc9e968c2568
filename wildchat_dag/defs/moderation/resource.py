"""Resources of the moderation step: OpenAI's Moderation API and the Detoxify model."""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr

from wildchat_dag import settings
from wildchat_dag.core.ip_addresses import SALT_ENV_VAR
from wildchat_dag.defs.moderation.detoxify_scoring import (
    DEFAULT_MODEL_TYPE,
    DetoxifyScorer,
    load_detoxify,
)
from wildchat_dag.defs.moderation.inflight_limit import OPENAI_API, InflightLimit, default_lock_dir
from wildchat_dag.defs.moderation.moderation import Unconfigured
from wildchat_dag.defs.moderation.openai_moderation import (
    DEFAULT_MODEL,
    ModerationSettings,
    OpenAIModerationScorer,
)

API_KEY_ENV_VAR = "OPENAI_API_KEY"
# A file holding the key (a Docker or Kubernetes secret), for where an environment variable
# would show in ``docker inspect``.
API_KEY_FILE_ENV_VAR = "OPENAI_API_KEY_FILE"
BASE_URL_ENV_VAR = "OPENAI_BASE_URL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_OPENAI_HOST = "api.openai.com"

# The only environment variables run config may name ({"env": ...}) in this resource's config,
# by field. Any other name could deliver another secret (the IP salt) as the bearer token, or
# write it into the warehouse as the model's name.
_RUN_CONFIG_ENV_VARS = {
    "api_key": API_KEY_ENV_VAR,
    "api_key_file": API_KEY_FILE_ENV_VAR,
    "base_url": BASE_URL_ENV_VAR,
}
# Fields that hold or locate a secret: never typed into run config, which is stored with the
# run and shown in the UI, and could name any file on the machine.
_SECRET_FIELDS = ("api_key", "api_key_file")


class OpenAIConfigError(ValueError):
    """The ``openai`` resource is configured in a way that must not run. The message names
    the setting, never its value."""


def run_config_problem(config: Mapping[str, Any], key: str = "openai") -> str | None:
    """What is wrong with the ``openai`` resource's run config (as launched, before Dagster
    resolves ``{"env": ...}``), or None. Names the setting, never the value."""
    for name, value in config.items():
        setting = f"resources.{key}.config.{name}"
        if isinstance(value, Mapping) and "env" in value:
            allowed = _RUN_CONFIG_ENV_VARS.get(name)
            if value.get("env") != allowed:
                fixed = f' (only {{"env": "{allowed}"}} is accepted)' if allowed else ""
                return (
                    f"{setting} reads an environment variable that run config may not name"
                    f"{fixed}: the variables a run may read are fixed in code"
                )
        elif name in _SECRET_FIELDS and value is not None:
            return (
                f"{setting} is given as a value in run config, which is stored with the run: "
                f"leave it out (the key is read from {API_KEY_ENV_VAR} or the file named by "
                f'{API_KEY_FILE_ENV_VAR}) or give {{"env": "{_RUN_CONFIG_ENV_VARS[name]}"}}'
            )
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None


def base_url_problem(
    url: str, allowlist: Sequence[str] = (), operator_url: str | None = None
) -> str | None:
    """Why the key and the texts may not go to ``url``, or None. Allowed: OpenAI's API (https),
    loopback addresses (http or https: a local proxy or test server), the operator's own
    ``OPENAI_BASE_URL``, and the hosts or URL prefixes of ``allowlist``
    (``WILDCHAT_OPENAI_BASE_URL_ALLOWLIST``). The message never shows the URL: run config could
    have filled it from a secret."""
    refused = (
        "base_url is not allowed (the value is not shown): the API key and the texts go only to "
        f"https://{_OPENAI_HOST}, a loopback address (127.0.0.1, ::1, localhost), "
        f"{BASE_URL_ENV_VAR} or a host listed in {settings.OPENAI_BASE_URL_ALLOWLIST_ENV}, "
        "both set where the code location runs"
    )
    parts = urllib.parse.urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    # Credentials in the URL would travel with every request; a bad port is not a URL.
    if parts.scheme not in ("http", "https") or not host or parts.username or _port(parts) is None:
        return refused
    if operator_url and url.strip().rstrip("/") == operator_url.strip().rstrip("/"):
        return None
    if _loopback(host):
        return None
    if parts.scheme == "https" and host == _OPENAI_HOST and _port(parts) == 443:
        return None
    for entry in allowlist:
        if "://" not in entry:
            if parts.scheme == "https" and host == entry.lower():
                return None
            continue
        allowed = urllib.parse.urlsplit(entry)
        if (allowed.scheme, (allowed.hostname or "").lower(), _port(allowed)) == (
            parts.scheme,
            host,
            _port(parts),
        ) and (parts.path.rstrip("/") + "/").startswith(allowed.path.rstrip("/") + "/"):
            return None
    return refused


class OpenAIModerationResource(ConfigurableResource):
    """OpenAI's Moderation API through the official client, batched and retried by
    wildchat-dag (the client's own retries are off).

    The key comes from ``OPENAI_API_KEY`` (through ``EnvVar``) or the file named by
    ``OPENAI_API_KEY_FILE``, never from a name or a path chosen in run config. With no key
    and the resource left at its defaults (the demo), the moderation assets still
    materialize, with null scores and a note saying how to enable it; a resource given
    settings of its own but no key fails the run instead of silently skipping OpenAI."""

    api_key: str | None = Field(
        default=None,
        description="The API key. Leave unset: it is read from the OPENAI_API_KEY environment "
        'variable (in run config, only {"env": "OPENAI_API_KEY"} is accepted).',
    )
    api_key_file: str | None = Field(
        default=None,
        description="A file holding the API key (a Docker secret). Leave unset: it is read "
        'from OPENAI_API_KEY_FILE (in run config, only {"env": "OPENAI_API_KEY_FILE"}).',
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="The API's base URL (OPENAI_BASE_URL): OpenAI's, a loopback address, or a "
        "proxy or gateway listed in WILDCHAT_OPENAI_BASE_URL_ALLOWLIST.",
    )
    model: str = Field(default=DEFAULT_MODEL, description="The moderation model.")
    batch_size: int = Field(default=32, ge=1, description="Texts per request.")
    batch_chars: int = Field(
        default=100_000, ge=1, description="At most this many characters per request."
    )
    max_in_flight: int = Field(
        default=4,
        ge=1,
        description="Requests in flight at once, across every step and run that shares the "
        "lock folder (WILDCHAT_LOCK_DIR, default $WILDCHAT_HOME/locks).",
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Per request; then retried.")
    max_attempts: int = Field(
        default=6, ge=1, description="Attempts per request on 429, 5xx, timeouts, bad answers."
    )
    backoff_base_s: float = Field(
        default=1.0, ge=0, description="First retry's wait; doubled each attempt, with jitter."
    )
    backoff_max_s: float = Field(default=60.0, ge=0, description="Longest wait between attempts.")
    split_min_chars: int = Field(
        default=1_000,
        ge=2,
        description="A text the API refuses is split in half and scored in parts, down to this "
        "length; a shorter refused text is recorded as rejected.",
    )

    _run_config_problem: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Check the run config as launched: Dagster resolves ``{"env": ...}`` before the
        resource sees its values, so only there can a foreign variable's name be caught."""
        run = context.dagster_run
        resources = (run.run_config or {}).get("resources") if run is not None else None
        if not isinstance(resources, Mapping):
            return
        keys = [
            k for k, d in (context.all_resource_defs or {}).items() if d is context.resource_def
        ] or ["openai"]
        for key in keys:
            entry = resources.get(key)
            config = entry.get("config") if isinstance(entry, Mapping) else None
            if isinstance(config, Mapping):
                self._run_config_problem = run_config_problem(config, key)
                if self._run_config_problem:
                    return

    def _at_defaults(self) -> bool:
        """Whether nothing was configured: the only case where a missing key may skip OpenAI."""
        return all(
            getattr(self, name) == info.default for name, info in type(self).model_fields.items()
        )

    def _key(self) -> str | None:
        """The API key: the resource's (EnvVar OPENAI_API_KEY in code), else its key file,
        else OPENAI_API_KEY or OPENAI_API_KEY_FILE where the step runs (so a launchpad config
        that leaves the key out still finds it). None when there is none; raises, naming the
        setting, when one is given but empty or unreadable."""
        if self.api_key is not None:
            if not self.api_key.strip():
                raise OpenAIConfigError(
                    f"the openai resource's api_key is empty (is {API_KEY_ENV_VAR} set to an "
                    "empty value?)"
                )
            return self.api_key.strip()
        sources = [("api_key_file", self.api_key_file)] if self.api_key_file else []
        if os.environ.get(API_KEY_ENV_VAR, "").strip():
            return os.environ[API_KEY_ENV_VAR].strip()
        if os.environ.get(API_KEY_FILE_ENV_VAR):
            sources.append((API_KEY_FILE_ENV_VAR, os.environ[API_KEY_FILE_ENV_VAR]))
        for setting, path in sources:
            try:
                key = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                raise OpenAIConfigError(
                    f"the file named by {setting} cannot be read as the API key"
                ) from None
            if not key:
                raise OpenAIConfigError(f"the file named by {setting} is empty")
            return key
        return None

    def scorer(self) -> OpenAIModerationScorer | Unconfigured:
        """The scorer, or why OpenAI moderation does not run (only with no settings and no
        key). Raises ``OpenAIConfigError`` on a configuration that must not run."""
        if self._run_config_problem:
            raise OpenAIConfigError(self._run_config_problem)
        key = self._key()
        if key is None:
            if not self._at_defaults():
                raise OpenAIConfigError(
                    "the openai resource has settings of its own but no API key: set "
                    f"{API_KEY_ENV_VAR} (or {API_KEY_FILE_ENV_VAR}) where the code location "
                    "runs. Only with no openai settings at all does a missing key skip OpenAI "
                    "moderation."
                )
            return Unconfigured(
                "openai",
                f"no API key: set {API_KEY_ENV_VAR} (and OPENAI_BASE_URL for a proxy or gateway) "
                "where the code location runs, then re-materialize",
            )
        problem = base_url_problem(
            self.base_url,
            settings.openai_base_url_allowlist(),
            os.environ.get(BASE_URL_ENV_VAR) or None,
        )
        if problem:
            raise OpenAIConfigError(problem)
        salt = os.environ.get(SALT_ENV_VAR)
        if salt and key == salt.strip():
            # Whatever route it came by, the IP salt never leaves as a bearer token.
            raise OpenAIConfigError(f"the API key equals {SALT_ENV_VAR}: refusing to send it")
        import openai

        client = openai.OpenAI(
            api_key=key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
        )
        moderation_settings = ModerationSettings(
            batch_size=self.batch_size,
            batch_chars=self.batch_chars,
            max_in_flight=self.max_in_flight,
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            split_min_chars=self.split_min_chars,
        )
        return OpenAIModerationScorer(
            client,
            self.model,
            moderation_settings,
            # The global limit, held per request by every thread, step and run that shares the
            # lock folder, whatever the Dagster pool or the instance storage do. The folder comes
            # from the environment, not run config, so a run cannot give itself a private one.
            request_slot=InflightLimit(OPENAI_API, self.max_in_flight, default_lock_dir()).slot,
        )


_LOADED: dict[tuple, tuple] = {}


def _loaded(*args) -> tuple | Unconfigured:
    """One load per process and configuration: a step scores many batches with it. A missing
    model is not remembered, so weights added later are found."""
    if args not in _LOADED:
        loaded = load_detoxify(*args)
        if isinstance(loaded, Unconfigured):
            return loaded
        _LOADED[args] = loaded
    return _LOADED[args]


class DetoxifyResource(ConfigurableResource):
    """The Detoxify classifier, loaded from local files: nothing is downloaded unless
    ``allow_download`` is set. With no weights here, the moderation assets still materialize,
    with null scores and a note saying how to enable it."""

    model_type: str = Field(
        default=DEFAULT_MODEL_TYPE,
        description="original, unbiased, multilingual (default), original-small or unbiased-small.",
    )
    checkpoint: str | None = Field(
        default=None,
        description="A local Detoxify checkpoint (.ckpt with its config and state_dict); "
        "WILDCHAT_DETOXIFY_CHECKPOINT. Unset: the released weights of model_type from torch's "
        "hub cache, if there.",
    )
    huggingface_config_path: str | None = Field(
        default=None,
        description="A folder with the model's Hugging Face config and tokenizer files, for "
        "offline machines (WILDCHAT_DETOXIFY_CONFIG_PATH).",
    )
    device: str = Field(
        default="auto", description="auto (CUDA when present), cpu, cuda or cuda:N."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Texts (or windows) per forward pass. Default: 32 on a GPU, 8 on the CPU, "
        "where larger batches only add padding (benchmarks/bench_moderation.py).",
    )
    window_tokens: int = Field(
        default=510,
        ge=16,
        le=510,
        description="Longer texts are scored in windows of this many tokens; each field keeps "
        "its highest score.",
    )
    window_overlap: int = Field(default=64, ge=0, description="Tokens shared by two windows.")
    allow_download: bool = Field(
        default=False,
        description="Let Detoxify fetch its weights from GitHub and its config from Hugging "
        "Face when they are not on this machine.",
    )

    def scorer(self) -> DetoxifyScorer | Unconfigured:
        loaded = _loaded(
            self.model_type,
            self.checkpoint,
            self.huggingface_config_path,
            self.device,
            self.allow_download,
        )
        if isinstance(loaded, Unconfigured):
            return loaded
        model, key = loaded
        batch_size = self.batch_size or (32 if str(model.device).startswith("cuda") else 8)
        return DetoxifyScorer(model, key, batch_size, self.window_tokens, self.window_overlap)
