"""Checks over the stored tables, as SQL for the DuckDB warehouse (no dagster here)."""

from __future__ import annotations

# For the requests of one collection day: how many times each is placed, in a conversation's
# own turns or as an orphan, over every partition. Exactly once is the invariant.
PLACEMENT_SQL = """
WITH day_requests AS (
    SELECT turn_id FROM main.raw_requests WHERE partition_day = $day
),
placed AS (
    SELECT t.turn_id FROM (
        SELECT unnest(own_turn_ids) AS turn_id FROM main.linked_conversations
    ) t SEMI JOIN day_requests USING (turn_id)
    UNION ALL
    SELECT o.turn_id FROM main.orphaned_requests o SEMI JOIN day_requests USING (turn_id)
),
counts AS (
    SELECT r.turn_id, count(p.turn_id) AS times
    FROM day_requests r LEFT JOIN placed p USING (turn_id)
    GROUP BY r.turn_id
)
SELECT
    count(*) AS requests,
    count(*) FILTER (WHERE times = 1) AS placed_once,
    count(*) FILTER (WHERE times = 0) AS not_placed,
    count(*) FILTER (WHERE times > 1) AS placed_twice_or_more,
    list(turn_id ORDER BY turn_id) FILTER (WHERE times <> 1)[1:10] AS sample_turn_ids
FROM counts
"""
