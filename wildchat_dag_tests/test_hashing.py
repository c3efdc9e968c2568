import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wildchat_dag.core.hashing import (
    EMPTY_HISTORY_HASH,
    canonical_messages_json,
    history_hashes,
    json_array_body,
    sha256_column,
    sha256_hex,
)

# Surrogates cannot be stored in UTF-8, so no log line can carry them.
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": text}),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_vectorised_json_matches_the_python_reference(msgs):
    frame = pl.DataFrame(
        {"m": [msgs]}, schema={"m": pl.List(pl.Struct({"role": pl.String, "content": pl.String}))}
    )
    vectorised = frame.select("[" + json_array_body(pl.col("m")) + "]").item()
    assert vectorised == canonical_messages_json(msgs)


def test_prev_of_a_first_turn_is_the_empty_history():
    prev, current = history_hashes([{"role": "user", "content": "hi"}], "hello")
    assert prev == EMPTY_HISTORY_HASH
    assert current == sha256_hex(
        '[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]'
    )


def test_next_turn_prev_equals_previous_current():
    _, current = history_hashes([{"role": "user", "content": "a\nb"}], "c")
    prev, _ = history_hashes(
        [
            {"role": "user", "content": "a\nb"},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
        ],
        "e",
    )
    assert prev == current


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "a", "é", "中文", "\u200b", "\x00", "👍🏽", "x" * 5000]), max_size=8
    )
)
def test_sha256_column_is_sha256_of_each_text(texts):
    texts = texts + texts[:2]  # duplicates too
    column = sha256_column(pl.Series("content", texts, dtype=pl.String))
    assert column.name == "content" and column.dtype == pl.String
    assert column.to_list() == [sha256_hex(t) for t in texts]


def test_sha256_column_refuses_a_null_text():
    with pytest.raises(ValueError, match="1 null text"):
        sha256_column(pl.Series("content", ["a", None]))
