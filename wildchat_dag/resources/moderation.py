"""Resources of the moderation step: OpenAI's Moderation API and the Detoxify model."""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import Field

from wildchat_dag.core.detoxify_scoring import DEFAULT_MODEL_TYPE, DetoxifyScorer, load_detoxify
from wildchat_dag.core.moderation import Unconfigured
from wildchat_dag.core.openai_moderation import (
    DEFAULT_MODEL,
    ModerationSettings,
    OpenAIModerationScorer,
)

API_KEY_ENV_VAR = "OPENAI_API_KEY"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIModerationResource(ConfigurableResource):
    """OpenAI's Moderation API through the official client, batched and retried by
    wildchat-dag (the client's own retries are off). Without an API key the moderation assets
    still materialize, with null scores and a note saying how to enable it."""

    api_key: str | None = Field(
        default=None,
        description="The API key, from the OPENAI_API_KEY environment variable. Unset: OpenAI "
        "moderation does not run.",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="The API's base URL (OPENAI_BASE_URL): a proxy, a gateway, or a local "
        "server that speaks the Moderation API.",
    )
    model: str = Field(default=DEFAULT_MODEL, description="The moderation model.")
    batch_size: int = Field(default=32, ge=1, description="Texts per request.")
    batch_chars: int = Field(
        default=100_000, ge=1, description="At most this many characters per request."
    )
    max_in_flight: int = Field(default=4, ge=1, description="Requests sent at once.")
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

    def scorer(self) -> OpenAIModerationScorer | Unconfigured:
        if not self.api_key:
            return Unconfigured(
                "openai",
                f"no API key: set {API_KEY_ENV_VAR} (and OPENAI_BASE_URL for a proxy or gateway) "
                "where the code location runs, then re-materialize",
            )
        import openai

        client = openai.OpenAI(
            api_key=self.api_key, base_url=self.base_url, timeout=self.timeout_s, max_retries=0
        )
        settings = ModerationSettings(
            batch_size=self.batch_size,
            batch_chars=self.batch_chars,
            max_in_flight=self.max_in_flight,
            max_attempts=self.max_attempts,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            split_min_chars=self.split_min_chars,
        )
        return OpenAIModerationScorer(client, self.model, settings)


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
