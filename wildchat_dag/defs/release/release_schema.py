"""WildChat-1M's released schema, in one place: as polars types (the per-day records), as Arrow
types (the Parquet files), and as the ``dataset_info.features`` YAML of a Hugging Face card.

Field order and names are the dataset card's; Arrow types are the ones ``datasets`` maps to the
card's features (``string``, not ``large_string``; ``list``, not ``large_list``).
"""

from __future__ import annotations

from typing import Any

import polars as pl
import pyarrow as pa

from wildchat_dag.core.schema import DETOXIFY_FIELDS, PARTITION_COLUMN, SPEC_CATEGORY_KEYS

UTC_TIME = pl.Datetime("us", "UTC")
HEADER = pl.Struct({"accept-language": pl.String, "user-agent": pl.String})

RELEASE_UTTERANCE = pl.Struct(
    {
        "content": pl.String,
        "country": pl.String,
        "hashed_ip": pl.String,
        "header": HEADER,
        "language": pl.String,
        "redacted": pl.Boolean,
        "role": pl.String,
        "state": pl.String,
        "timestamp": UTC_TIME,
        "toxic": pl.Boolean,
        "turn_identifier": pl.Int64,
    }
)

OPENAI_RESULT = pl.Struct(
    {
        "categories": pl.Struct({k: pl.Boolean for k in SPEC_CATEGORY_KEYS}),
        "category_scores": pl.Struct({k: pl.Float64 for k in SPEC_CATEGORY_KEYS}),
        "flagged": pl.Boolean,
    }
)

DETOXIFY_RESULT = pl.Struct({f: pl.Float64 for f in DETOXIFY_FIELDS})

# One released conversation, in the card's field order.
RELEASE_SCHEMA = pl.Schema(
    {
        "conversation_hash": pl.String,
        "model": pl.String,
        "timestamp": UTC_TIME,
        "conversation": pl.List(RELEASE_UTTERANCE),
        "turn": pl.Int64,
        "language": pl.String,
        "openai_moderation": pl.List(OPENAI_RESULT),
        "detoxify_moderation": pl.List(DETOXIFY_RESULT),
        "toxic": pl.Boolean,
        "redacted": pl.Boolean,
        "state": pl.String,
        "country": pl.String,
        "hashed_ip": pl.String,
        "header": HEADER,
    }
)


# The per-day table behind both releases: every conversation in the released shape, with whether
# each release takes it and why not.
RELEASE_RECORDS_SCHEMA = pl.Schema(
    {
        PARTITION_COLUMN: pl.Datetime("us"),
        "conversation_id": pl.Int64,
        **RELEASE_SCHEMA,
        "in_public": pl.Boolean,
        "in_full": pl.Boolean,
        # Why a release leaves the conversation out: sexual_minors, not_screened (OpenAI did
        # not score every utterance, so sexual/minors is unknown), toxic, toxicity_unknown.
        "public_exclusion": pl.String,
        "full_exclusion": pl.String,
        "scored_by": pl.List(pl.String),
        "redaction_rules_hash": pl.String,
        "geoip_snapshots": pl.List(pl.Date),
    }
)

RELEASES = ("public", "full")


def arrow_type(dtype: pl.DataType) -> pa.DataType:
    """The Arrow type ``datasets`` reads back as the card's feature."""
    if isinstance(dtype, pl.Struct):
        return pa.struct([pa.field(f.name, arrow_type(f.dtype)) for f in dtype.fields])
    if isinstance(dtype, pl.List):
        return pa.list_(arrow_type(dtype.inner))
    if isinstance(dtype, pl.Datetime):
        return pa.timestamp(dtype.time_unit, tz=dtype.time_zone)
    simple = {pl.String: pa.string(), pl.Boolean: pa.bool_(), pl.Int64: pa.int64()}
    simple[pl.Float64] = pa.float64()
    return simple[dtype.base_type()]


RELEASE_ARROW_SCHEMA = pa.schema(
    [pa.field(name, arrow_type(dtype)) for name, dtype in RELEASE_SCHEMA.items()]
)


def _feature(name: str, dtype: pl.DataType) -> dict[str, Any]:
    if isinstance(dtype, pl.Struct):
        return {"name": name, "struct": [_feature(f.name, f.dtype) for f in dtype.fields]}
    if isinstance(dtype, pl.List) and isinstance(dtype.inner, pl.Struct):
        return {"name": name, "list": [_feature(f.name, f.dtype) for f in dtype.inner.fields]}
    if isinstance(dtype, pl.Datetime):
        return {"name": name, "dtype": f"timestamp[{dtype.time_unit}, tz={dtype.time_zone}]"}
    names = {pl.String: "string", pl.Boolean: "bool", pl.Int64: "int64", pl.Float64: "float64"}
    return {"name": name, "dtype": names[dtype.base_type()]}


def card_features() -> list[dict[str, Any]]:
    """``dataset_info.features`` as the card's YAML writes it."""
    return [_feature(name, dtype) for name, dtype in RELEASE_SCHEMA.items()]
