import duckdb
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from wildchat_dag.core.hashing import (
    EMPTY_HISTORY_HASH,
    canonical_messages_json,
    history_hashes,
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
def test_duckdb_to_json_matches_the_python_reference(msgs):
    con = duckdb.connect()
    frame = pl.DataFrame(
        {"m": [msgs]}, schema={"m": pl.List(pl.Struct({"role": pl.String, "content": pl.String}))}
    )
    duck_json, duck_hash = con.sql("SELECT to_json(m), sha256(to_json(m)) FROM frame").fetchone()
    assert duck_json == canonical_messages_json(msgs)
    assert duck_hash == sha256_hex(canonical_messages_json(msgs))


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
