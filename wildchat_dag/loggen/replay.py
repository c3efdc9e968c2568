"""Turn finished conversations (e.g. real WildChat ones) back into raw request logs.

The output follows the same contract as the synthetic generator, but contains no
regenerations and no late continuations: every conversation must be exactly reconstructable,
which is what the round-trip tests check. Identity changes (IP switches, shared NAT IPs,
midnight crossings) are still injected, because those are what reconstruction has to survive.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from wildchat_dag.loggen import text
from wildchat_dag.loggen.generator import (
    DAY_US,
    DEFAULT_FIRST_TURN_ID,
    MINUTE_US,
    SCHEMA_VERSION,
    SECOND_US,
    DayShardWriter,
    TimestampFormatter,
    date_to_us,
    format_xff,
    random_client_ip,
    random_proxy_ip,
    random_xff_style,
)

_ROLES = ("user", "assistant")

IP_CHANGE_RATE = 0.2
SHARED_IP_RATE = 0.2
CROSS_MIDNIGHT_RATE = 0.15


@dataclass(frozen=True)
class ReplayedConversation:
    """Where one input conversation ended up in the replayed logs."""

    source_index: int
    conversation_hash: str | None
    turn_ids: list[int]
    """turn_id of each of its requests, in turn order."""
    messages: list[dict[str, str]]
    """The full conversation as written (normalised to role/content only)."""
    crosses_midnight: bool
    ip_changed: bool
    shared_ip: bool


def fill_missing_turns(messages: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Make ``messages`` alternate user/assistant, starting with user and ending with assistant.

    A missing role is filled with an empty message of that role, which is how the log format
    represents an empty prompt or reply. Only ``role`` and ``content`` are kept; a ``None``
    content becomes ``""``.
    """
    out: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(f"message {i} has role {role!r}; expected 'user' or 'assistant'")
        expected = _ROLES[len(out) % 2]
        if role != expected:
            out.append({"role": expected, "content": ""})
        content = message.get("content")
        out.append({"role": role, "content": "" if content is None else str(content)})
    if len(out) % 2 == 1:
        out.append({"role": "assistant", "content": ""})
    return out


def _validate(index: int, conversation: dict[str, Any]) -> list[dict[str, str]]:
    messages = conversation.get("conversation")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"conversation {index}: 'conversation' must be a non-empty list")
    if len(messages) % 2:
        raise ValueError(
            f"conversation {index} does not alternate: odd number of messages ({len(messages)}),"
            " it must end with an assistant message"
        )
    out: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role != _ROLES[i % 2]:
            raise ValueError(
                f"conversation {index} does not alternate: message {i} has role {role!r}, "
                f"expected {_ROLES[i % 2]!r}"
            )
        content = message.get("content")
        out.append({"role": role, "content": "" if content is None else str(content)})
    return out


class _Identities:
    """Hands out client IPs and fingerprints that are never reused, so conversations that are
    meant to be distinct users cannot be merged by accident."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._ips: set[str] = set()
        self._fingerprints: set[tuple[str, str]] = set()

    def ip(self) -> str:
        for _ in range(10_000):
            ip = random_client_ip(self._rng, ipv6_rate=0.15)
            if ip not in self._ips:
                self._ips.add(ip)
                return ip
        raise RuntimeError("could not find an unused client IP")

    def fingerprint(self, avoid_uas: set[str] | None = None) -> tuple[str, str]:
        rng = self._rng
        for _ in range(10_000):
            lang = rng.choice(tuple(text.BANKS))
            fp = (text.random_user_agent(rng), text.random_accept_language(rng, lang))
            if fp not in self._fingerprints and (avoid_uas is None or fp[0] not in avoid_uas):
                self._fingerprints.add(fp)
                return fp
        raise RuntimeError("could not find an unused browser fingerprint")


@dataclass
class _Plan:
    index: int
    messages: list[dict[str, str]]
    fingerprint: tuple[str, str]
    ip: str
    style: int
    proxy: str
    port: int
    start_us: int
    shared_ip: bool = False
    switch_turn: int = 0
    new_ip: str = ""
    midnight_us: int = 0


def replay_conversations(
    conversations: Sequence[dict[str, Any]],
    out_root: Path | str,
    *,
    start_date: date,
    days: int = 3,
    seed: int = 0,
    gzip: bool = False,
    first_turn_id: int = DEFAULT_FIRST_TURN_ID,
) -> list[ReplayedConversation]:
    """Write each conversation as a chain of full-history requests, interleaved over ``days``.

    Request k of a conversation carries its first 2k-1 messages and message 2k as response.
    About 20% of multi-turn conversations change client IP mid-way, about 20% of all share a
    NAT IP with other users (distinct user agents, overlapping times), about 15% of multi-turn
    ones straddle a midnight UTC; every other conversation has its own IP and fingerprint.
    With ``days == 1`` the only midnight is the end of the range, so crossing conversations
    spill into the following day's folder.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    validated = [_validate(i, c) for i, c in enumerate(conversations)]
    rng = random.Random(seed)
    ids = _Identities(rng)
    base_us = date_to_us(start_date)
    # Leave room at the end so long conversations stay (mostly) inside the range.
    span_us = max(days * DAY_US - 12 * 3600 * SECOND_US, DAY_US // 2)

    plans: list[_Plan] = []
    for index, messages in enumerate(validated):
        fp = ids.fingerprint()
        plans.append(
            _Plan(
                index=index,
                messages=messages,
                fingerprint=fp,
                ip=ids.ip(),
                style=random_xff_style(rng, 0.05),
                proxy=random_proxy_ip(rng),
                port=rng.choice((443, 8080, rng.randrange(1024, 65536))),
                start_us=base_us + rng.randrange(span_us),
            )
        )

    _plan_shared_ips(rng, ids, plans, base_us, span_us)
    for plan in plans:
        n_turns = len(plan.messages) // 2
        if n_turns < 2:
            continue
        if rng.random() < IP_CHANGE_RATE:
            plan.switch_turn = rng.randint(2, n_turns)
            plan.new_ip = ids.ip()
        if rng.random() < CROSS_MIDNIGHT_RATE:
            boundary = rng.randint(1, max(1, days - 1))
            plan.midnight_us = base_us + boundary * DAY_US
            plan.start_us = plan.midnight_us - rng.randrange(20 * SECOND_US, 5 * MINUTE_US)

    # (timestamp, response timestamp, plan index, turn number); serialised only when written,
    # so memory stays proportional to the number of requests, not to their size.
    events: list[tuple[int, int, int, int]] = []
    for p, plan in enumerate(plans):
        t = plan.start_us
        midnight = plan.midnight_us
        for k in range(1, len(plan.messages) // 2 + 1):
            response = plan.messages[2 * k - 1]["content"]
            resp = t + 700_000 + min(len(response) * rng.randrange(3_000, 12_000), 60 * SECOND_US)
            events.append((t, resp, p, k))
            think = min(rng.lognormvariate(math.log(30.0), 0.9), 1200.0)
            t = resp + int(max(think, 2.0) * SECOND_US)
            if midnight and t < midnight:
                t = midnight + rng.randrange(SECOND_US, 120 * SECOND_US)
            midnight = 0
    events.sort()

    fmt = TimestampFormatter()
    writer = DayShardWriter(Path(out_root), gzip=gzip, shards=1)
    turn_ids: list[list[int]] = [[] for _ in plans]
    days_seen: list[set[int]] = [set() for _ in plans]
    next_id = first_turn_id
    try:
        for t, resp, p, k in events:
            plan = plans[p]
            ip = plan.new_ip if plan.switch_turn and k >= plan.switch_turn else plan.ip
            record = {
                "schema_version": SCHEMA_VERSION,
                "turn_id": next_id,
                "timestamp": fmt(t),
                "model": conversations[plan.index].get("model") or "gpt-3.5-turbo-0613",
                "headers": {
                    "user-agent": plan.fingerprint[0],
                    "accept-language": plan.fingerprint[1],
                    "x-forwarded-for": format_xff(ip, plan.style, plan.proxy, plan.port),
                },
                "messages": plan.messages[: 2 * k - 1],
                "response": plan.messages[2 * k - 1]["content"],
                "response_timestamp": fmt(resp),
            }
            writer.write(t // DAY_US, 0, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            turn_ids[p].append(next_id)
            days_seen[p].add(t // DAY_US)
            next_id += 1
    except BaseException:
        writer.abort()
        raise
    writer.close()

    return [
        ReplayedConversation(
            source_index=plan.index,
            conversation_hash=conversations[plan.index].get("conversation_hash"),
            turn_ids=turn_ids[p],
            messages=plan.messages,
            crosses_midnight=len(days_seen[p]) > 1,
            ip_changed=bool(plan.switch_turn),
            shared_ip=plan.shared_ip,
        )
        for p, plan in enumerate(plans)
    ]


def _plan_shared_ips(
    rng: random.Random, ids: _Identities, plans: list[_Plan], base_us: int, span_us: int
) -> None:
    """Put about SHARED_IP_RATE of the conversations into NAT groups of 2-5 users."""
    members = [p for p in plans if rng.random() < SHARED_IP_RATE]
    rng.shuffle(members)
    while len(members) >= 2:
        size = min(len(members), rng.randint(2, 5))
        if len(members) - size == 1:
            size += 1  # never leave a single member without a group
        group, members = members[:size], members[size:]
        ip = ids.ip()
        t0 = base_us + rng.randrange(span_us)
        uas: set[str] = set()
        for plan in group:
            # Users behind one NAT are told apart by their browsers, so these must differ.
            plan.fingerprint = ids.fingerprint(avoid_uas=uas)
            uas.add(plan.fingerprint[0])
            plan.ip = ip
            plan.shared_ip = True
            plan.start_us = t0 + rng.randrange(5 * MINUTE_US)
