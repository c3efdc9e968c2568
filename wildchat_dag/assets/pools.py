"""Dagster pools: steps that must not run side by side, across every run of the instance.

dagster.yaml gives every pool one slot (``concurrency.pools.default_limit``);
``dagster instance concurrency set <pool> <n>`` raises one. Short reads and writes of the DuckDB
file need no pool: the IO manager and the warehouse take them one at a time under a file lock,
which lets the steps of several runs compute side by side.
"""

# The OpenAI Moderation API's rate limits are per organisation, not per run: with one step at a
# time, at most `openai.max_in_flight` requests are in flight, whatever the number of runs.
OPENAI_POOL = "openai_api"

# One Detoxify model (about 1 GB for the multilingual one) in memory at a time.
DETOXIFY_POOL = "detoxify_model"

# Steps that read and rewrite a whole table or folder (the PII frequency table, the release
# statistics, an export): two at once would each compute from what the other is replacing.
WAREHOUSE_TABLES_POOL = "warehouse_tables"
