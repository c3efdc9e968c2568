"""The linking rule as a plain per-request loop: the specification the vectorised path is held to.

Tests compare ``wildchat_dag.defs.linking.linking`` with it, and the benchmark times it as the
baseline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wildchat_dag.core.hashing import EMPTY_HISTORY_HASH, history_hashes


@dataclass(frozen=True)
class Decision:
    kind: str  # "link", "start", "branch" or "orphan"
    other: int | None  # the parent for a link, the forked-from end for a branch


def link_sequential(requests: Iterable[Mapping[str, Any]]) -> dict[int, Decision]:
    """Each request, in (timestamp, turn_id) order, takes the best end still free.

    A request is a mapping with ``turn_id, timestamp, model, ip, user_agent,
    accept_language`` and either ``messages`` and ``response`` or precomputed ``prev_hash`` and
    ``current_hash``.
    """
    ends: dict[tuple, list[tuple[int, int, str | None]]] = {}
    taken: set[int] = set()
    decisions: dict[int, Decision] = {}
    ordered = sorted(requests, key=lambda r: (r["timestamp"], r["turn_id"]))
    for seq, r in enumerate(ordered):
        if "prev_hash" in r:
            prev, current = r["prev_hash"], r["current_hash"]
        else:
            prev, current = history_hashes(r["messages"], r["response"])
        fingerprint = (r["user_agent"] or "", r["accept_language"] or "", r["model"])
        ip = r["ip"]
        if prev == EMPTY_HISTORY_HASH:
            decisions[r["turn_id"]] = Decision("start", None)
        else:
            candidates = [
                (ip is not None and end_ip == ip, end_seq, end_turn)
                for end_seq, end_turn, end_ip in ends.get((prev, *fingerprint), [])
            ]
            free = [c for c in candidates if c[2] not in taken]
            if free:
                parent = max(free)[2]
                taken.add(parent)
                decisions[r["turn_id"]] = Decision("link", parent)
            elif candidates:
                decisions[r["turn_id"]] = Decision("branch", max(candidates)[2])
            else:
                decisions[r["turn_id"]] = Decision("orphan", None)
        ends.setdefault((current, *fingerprint), []).append((seq, r["turn_id"], ip))
    return decisions
