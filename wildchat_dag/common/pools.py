"""Dagster pools: steps that must not run side by side, across every run of the instance.

dagster.yaml gives every pool one slot (``concurrency.pools.default_limit``);
``dagster instance concurrency set <pool> <n>`` raises one. Short reads and writes of the DuckDB
file need no pool: the IO manager and the warehouse take them one at a time under a file lock,
which lets the steps of several runs compute side by side.

A pool admits steps; it is not a hard limit. On the default SQLite instance, Dagster claims a
pool slot with a read and a separate write (SQLite has no ``SELECT ... FOR UPDATE``), so two runs
can both take the last slot in the same instant. Where a limit must hold, it is enforced in our
code as well: see ``OPENAI_POOL``.
"""

from wildchat_dag.defs.moderation.inflight_limit import OPENAI_API

# The OpenAI Moderation API's rate limits are per organisation, not per run. The pool runs one
# moderation step at a time, and shows it in the UI; the hard guarantee is the request limiter
# (defs/moderation/inflight_limit.py, of the same name), which keeps at most `openai.max_in_flight`
# requests in flight across every thread, step and run that shares its lock folder, whatever
# the pool's limit or the instance storage.
OPENAI_POOL = OPENAI_API

# One Detoxify model (about 1 GB for the multilingual one) in memory at a time.
DETOXIFY_POOL = "detoxify_model"

# Steps that read and rewrite a whole table or folder (the PII frequency table, the release
# statistics, an export): two at once would each compute from what the other is replacing.
WAREHOUSE_TABLES_POOL = "warehouse_tables"
