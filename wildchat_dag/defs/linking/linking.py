"""Link requests into conversations, as WildChat did, over a window of collection days.

The published rule: a request extends the latest earlier conversation end whose ``current`` hash
equals its ``prev`` hash, with the same device fingerprint (user-agent + accept-language) and
model, preferring an end with the same IP; only when no same-IP candidate exists is the IP
condition relaxed. An end that has been extended is not extended again.

Our choices where the rule is silent (README.md, "Linking"):
- **Regenerated replies.** The second request with the same history finds its end already taken.
  It starts a *branch*: a conversation of its own, rooted on its own day, that carries the whole
  history it was sent with. ``branch_of_turn_id`` names the end it forked from, and its inherited
  turns take their turn ids, times and headers from that end's path.
- **Orphans.** A request with history whose predecessor is nowhere in the window goes, with every
  request that continues it, to ``orphaned_requests`` with a reason.
- **Ownership and the lookahead bound.** A conversation belongs to the day of its first turn. The
  partition for day D links the window D-(N+1) .. D+N, where N is the lookahead in days, and keeps
  the chains rooted on D. A request more than N days after its conversation's first day is
  beyond the lookahead: the partition of its own day keeps it as an orphan with reason
  ``beyond_lookahead``. One extra day of lookback is what lets that partition tell.

- **Duplicate turn ids across days.** ``turn_id`` is unique per day (ingest quarantines a
  second copy within a day). A copy on another day is *set aside*: of all copies of a turn id,
  the first in the total order ``(partition_day, source_file, line_number)`` is linked, and each
  later one goes to ``orphaned_requests`` with reason ``duplicate_turn_id`` and a ``detail``
  naming the earliest copy it was compared with (``first seen at 2024-01-02/a.jsonl:17``). The
  order is that of the stored rows, never of ingestion or linking, so every partition decides
  alike. A copy is compared with the copies of the ``duplicate_horizon_days`` (2N+1) days before
  it: the farthest apart two copies can be and still meet in one window. Linking reads their
  turn ids (``earlier``) besides the window, so that every window holding a copy decides about
  it alike. A request that continues a set-aside copy is an orphan, ``follows_duplicate_turn_id``.
  Copies farther apart never meet: both are linked, each in its own window, and the placement
  check (``PLACEMENT_SQL``) counts them as ``duplicates_not_set_aside``, placed twice.

The rule is sequential (earlier requests take ends first). Almost every request has exactly one
candidate end and every end exactly one claimant, so those links are made by joins. Only the
contested groups, all requests and ends sharing one hash, fingerprint and model, replay the
sequential rule in Python; groups are independent, so the result equals the full sequential run.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import polars as pl

from wildchat_dag.core.schema import (
    CONTENT_COLUMNS,
    LINKED_CONVERSATIONS_SCHEMA,
    ORPHANED_REQUESTS_SCHEMA,
    PARTITION_COLUMN,
    REQUESTS_SCHEMA,
    UTTERANCE,
    days_named,
    partition_day_value,
)
from wildchat_dag.core.utterances import most_frequent
from wildchat_dag.defs.ingest.log_contract import QuarantineReason

FINGERPRINT = ("fp_user_agent", "fp_accept_language", "model")


class OrphanReason:
    PREDECESSOR_NOT_FOUND = "predecessor_not_found"
    FOLLOWS_ORPHAN = "follows_orphan"
    BEYOND_LOOKAHEAD = "beyond_lookahead"
    # A later copy of a turn id seen on another day; the same word as ingest's quarantine reason
    # for a copy on the same day.
    DUPLICATE_TURN_ID = QuarantineReason.DUPLICATE_TURN_ID
    # Continues a set-aside copy: its history is known, but not under a turn id of its own.
    FOLLOWS_DUPLICATE_TURN_ID = "follows_duplicate_turn_id"


class RootKind:
    START = "start"
    BRANCH = "branch"
    ORPHAN = "orphan"
    # A request on the window's first day whose predecessor may lie before the window.
    EDGE = "edge"


class DuplicateTurnIdError(ValueError):
    """The same stored row twice (one file and line, one turn id): not a duplicate in the logs,
    which is set aside, but a table written twice, which no order can settle."""


# The columns that identify one copy of a request, and their order: which copy is first.
COPY_ORDER = (PARTITION_COLUMN, "source_file", "line_number")
COPY_COLUMNS = ("turn_id", *COPY_ORDER)

# The message history and the reply are most of a raw request's bytes, and linking needs them
# only for the rows it keeps: a window may come without them (``LIGHT_WINDOW_SCHEMA``), with a
# ``ContentFetcher`` that reads them for those rows.
MESSAGE_COUNT = "message_count"
LIGHT_WINDOW_SCHEMA = pl.Schema(
    {
        **{c: t for c, t in REQUESTS_SCHEMA.items() if c not in CONTENT_COLUMNS},
        MESSAGE_COUNT: pl.Int64,
    }
)
# Given rows of the window (``CONTENT_KEY_COLUMNS``): those columns again, then ``messages`` and
# ``response``, one row each, in the same order.
CONTENT_KEY_COLUMNS = (*COPY_COLUMNS, "current_hash")
ContentFetcher = Callable[[pl.DataFrame], pl.DataFrame]


class ContentChangedError(RuntimeError):
    """The content read for the kept rows is not that of the rows linked: their day's raw
    requests were written again in between."""


@dataclass
class LinkResult:
    conversations: pl.DataFrame
    orphans: pl.DataFrame
    # Every window request's link: turn_id, parent_turn_id, branch_of_turn_id, kind, root.
    decisions: pl.DataFrame
    # Every window request set aside as a later copy of a turn id, whichever day owns it:
    # COPY_COLUMNS and ``detail``.
    set_aside: pl.DataFrame = field(default_factory=pl.DataFrame)
    stats: dict[str, int] = field(default_factory=dict)


def window_days(day: date, lookahead_days: int) -> tuple[date, date]:
    """First and last collection day that linking ``day`` reads."""
    return day - timedelta(days=lookahead_days + 1), day + timedelta(days=lookahead_days)


def duplicate_horizon_days(lookahead_days: int) -> int:
    """How many days back a copy of a turn id is looked for: the farthest apart two days of one
    linking window are, so that two copies that meet in a window are always told apart."""
    return 2 * lookahead_days + 1


def horizon_days(day: date, lookahead_days: int) -> tuple[date, date]:
    """First and last day before the window whose turn ids linking ``day`` reads (``earlier``):
    with them, the window's first day too sees the whole horizon behind it."""
    first, _ = window_days(day, lookahead_days)
    return first - timedelta(days=duplicate_horizon_days(lookahead_days)), first - timedelta(days=1)


def later_copies(copies: pl.DataFrame, horizon_days: int) -> pl.DataFrame:
    """The copies (``COPY_COLUMNS``) that are later copies of a turn id, with ``detail``.

    A copy is later when another copy of its turn id comes before it in ``COPY_ORDER`` on a day
    at most ``horizon_days`` before its own; ``detail`` names the first such copy. Only the
    copies themselves decide, never the order they are given in.
    """
    # Almost no turn id has a second copy: the integer column narrows to the few that do.
    shared = copies.select(COPY_COLUMNS).filter(pl.col("turn_id").is_duplicated())
    twice = shared.filter(shared.is_duplicated())
    if not twice.is_empty():
        sample = "; ".join(
            f"turn_id {t} at {f}:{n}"
            for t, _, f, n in twice.unique().sort(COPY_COLUMNS).head(5).iter_rows()
        )
        raise DuplicateTurnIdError(
            f"raw_requests holds the same log line twice ({sample}): the table was written twice "
            "for a day. Materialize raw_requests for that day again."
        )
    shared = shared.sort("turn_id", *COPY_ORDER).with_row_index("rank")
    pairs = (
        shared.join(shared, on="turn_id", suffix="_first")
        .filter(
            (pl.col("rank_first") < pl.col("rank"))
            & (
                pl.col(f"{PARTITION_COLUMN}_first")
                >= pl.col(PARTITION_COLUMN) - pl.duration(days=horizon_days)
            )
        )
        .sort("rank", "rank_first")
    )
    return (
        pairs.group_by("rank", maintain_order=True)
        .agg(
            *(pl.col(c).first() for c in COPY_COLUMNS),
            # ingest names a file by its day folder and name, so this names the day too.
            detail=pl.format(
                "first seen at {}:{}",
                pl.col("source_file_first").first(),
                pl.col("line_number_first").first(),
            ),
        )
        .select(*COPY_COLUMNS, "detail")
    )


def _prepare(
    window: pl.DataFrame,
    first_day: date,
    last_day: date,
    earlier: pl.DataFrame | None,
    horizon: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The window's requests to link, and those set aside as later copies of a turn id."""
    # The message history is most of the bytes: link on a light frame, and fetch the content
    # of the few rows that need it by position (``row``) at the end.
    window = (
        window.with_row_index("row")
        .select(
            PARTITION_COLUMN,
            "turn_id",
            "timestamp",
            "response_timestamp",
            "model",
            "ip",
            "user_agent",
            "accept_language",
            "prev_hash",
            "current_hash",
            "source_file",
            "line_number",
            "row",
            round=((_message_count(window) + 1) // 2).cast(pl.Int64),
        )
        .filter(pl.col("timestamp").dt.date().is_between(first_day, last_day, closed="both"))
        .with_columns(
            request_day=pl.col("timestamp").dt.date(),
            fp_user_agent=pl.col("user_agent").fill_null(""),
            fp_accept_language=pl.col("accept_language").fill_null(""),
        )
    )
    copies = window.select(COPY_COLUMNS)
    if earlier is not None and not earlier.is_empty():
        # Only days before the window: a window day given twice would look like a copy.
        before = pl.col(PARTITION_COLUMN) < pl.lit(partition_day_value(first_day))
        earlier = earlier.select(COPY_COLUMNS).cast(copies.schema).filter(before)
        copies = pl.concat([copies, earlier])
    later = later_copies(copies, horizon)
    set_aside = window.join(later, on=list(COPY_COLUMNS)).sort("timestamp", *COPY_COLUMNS)
    if not later.is_empty():
        window = window.join(later, on=list(COPY_COLUMNS), how="anti")
    return window.sort("timestamp", "turn_id").with_row_index("seq"), set_aside


def _resolve_contested(edges: pl.DataFrame) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Replay the sequential rule on contested groups: ``(links, branches)`` as turn-id pairs."""
    links: list[tuple[int, int]] = []
    branches: list[tuple[int, int]] = []
    rows = edges.sort("group", "r_seq", "e_seq").select(
        "group", "r_seq", "r_turn", "e_seq", "e_turn", "same_ip"
    )
    taken: set[int] = set()
    current_group = None
    current_claimant = None
    candidates: list[tuple[bool, int, int]] = []

    def settle(claimant: int) -> None:
        available = [c for c in candidates if c[2] not in taken]
        if available:
            _, _, end = max(available)
            taken.add(end)
            links.append((claimant, end))
        else:
            branches.append((claimant, max(candidates)[2]))

    for group, _r_seq, r_turn, e_seq, e_turn, same_ip in rows.iter_rows():
        if group != current_group or r_turn != current_claimant:
            if current_claimant is not None:
                settle(current_claimant)
            if group != current_group:
                taken = set()
            current_group, current_claimant, candidates = group, r_turn, []
        candidates.append((bool(same_ip), e_seq, e_turn))
    if current_claimant is not None:
        settle(current_claimant)
    return links, branches


def _roots(requests: pl.DataFrame, parents: pl.DataFrame) -> pl.DataFrame:
    """``turn_id -> root_turn_id`` by pointer doubling over the parent links, by position."""
    by_seq = requests.select("turn_id", "seq").sort("seq")
    up = (
        by_seq.join(parents, on="turn_id", how="left")
        .join(
            requests.select(parent_turn_id="turn_id", parent_seq="seq"),
            on="parent_turn_id",
            how="left",
        )
        .sort("seq")
        .select(pl.coalesce("parent_seq", "seq"))
        .to_series()
    )
    while True:
        jumped = up.gather(up)
        if jumped.equals(up):
            break
        up = jumped
    return by_seq.select("turn_id", root_turn_id=pl.col("turn_id").gather(up))


def _message_count(window: pl.DataFrame) -> pl.Expr:
    if "messages" in window.columns:
        return pl.col("messages").list.len()
    if MESSAGE_COUNT in window.columns:
        return pl.col(MESSAGE_COUNT)
    raise ValueError(
        f"a linking window needs either messages or {MESSAGE_COUNT}; it has {window.columns}"
    )


def _content(
    window: pl.DataFrame, rows: pl.Series, fetch: ContentFetcher | None
) -> list[pl.Series]:
    """``messages`` and ``response`` of the given window rows, in that order."""
    if fetch is None:
        heavy = window.select(CONTENT_COLUMNS)[rows]
        return [heavy["messages"], heavy["response"]]
    keys = window.select(*CONTENT_KEY_COLUMNS, MESSAGE_COUNT)[rows]
    heavy = fetch(keys.drop(MESSAGE_COUNT))
    # The rows read must be the rows linked, in order, down to their history's length.
    same = heavy.columns[: len(CONTENT_KEY_COLUMNS)] == list(CONTENT_KEY_COLUMNS) and (
        heavy.height == keys.height
        and heavy.select(*CONTENT_KEY_COLUMNS, pl.col("messages").list.len().alias(MESSAGE_COUNT))
        .cast(keys.schema)  # type: ignore[arg-type]
        .equals(keys)
    )
    if not same:
        days = days_named(keys)
        raise ContentChangedError(
            f"the content read for {keys.height} linked requests is not theirs ({heavy.height} "
            f"rows came back, or other ones): raw_requests of {days} were written again while "
            "linking ran. Materialize this partition again."
        )
    return [heavy["messages"], heavy["response"]]


def _build_conversations(
    requests: pl.DataFrame,
    owned: pl.DataFrame,
    path_parents: pl.DataFrame,
    day: date,
    window: pl.DataFrame,
    fetch: ContentFetcher | None,
) -> pl.DataFrame:
    last = (
        owned.sort("round")
        .group_by("root_turn_id", maintain_order=True)
        .agg(
            own_turn_ids=pl.col("turn_id"),
            last_turn_id=pl.col("turn_id").last(),
        )
        .rename({"root_turn_id": "conversation_id"})
    )
    # Walk from each conversation's last request back through parents (and, for a branch,
    # into the path it forked from) to find who sent each earlier round.
    meta = requests.select(
        "turn_id",
        "round",
        "timestamp",
        "response_timestamp",
        "ip",
        "user_agent",
        "accept_language",
    )
    frontier = last.select("conversation_id", node="last_turn_id")
    steps = [frontier]
    while not frontier.is_empty():
        frontier = frontier.join(path_parents, left_on="node", right_on="turn_id").select(
            "conversation_id", node="parent_turn_id"
        )
        steps.append(frontier)
    path = (
        pl.concat(steps)
        .join(meta, left_on="node", right_on="turn_id")
        .rename({"node": "turn_identifier"})
    )

    final = last.join(
        requests.select("turn_id", "row", "timestamp", "model", "round"),
        left_on="last_turn_id",
        right_on="turn_id",
    )
    final = final.with_columns(_content(window, final["row"], fetch))
    utterances = (
        final.select(
            "conversation_id",
            message=pl.col("messages").list.concat(
                pl.concat_list(pl.struct(role=pl.lit("assistant"), content=pl.col("response")))
            ),
        )
        .explode("message")
        .with_columns(index=pl.int_range(pl.len()).over("conversation_id"))
        .with_columns(
            round=(pl.col("index") // 2 + 1).cast(pl.Int64),
            role=pl.col("message").struct.field("role"),
            content=pl.col("message").struct.field("content"),
        )
        .join(path, on=["conversation_id", "round"], how="left")
        .with_columns(
            is_user=pl.col("role") == "user",
        )
        .with_columns(
            timestamp=pl.when("is_user").then("timestamp").otherwise("response_timestamp"),
            ip=pl.when("is_user").then("ip"),
            user_agent=pl.when("is_user").then("user_agent"),
            accept_language=pl.when("is_user").then("accept_language"),
        )
    )
    user_turns = utterances.filter("is_user")
    conversation_lists = (
        utterances.sort("conversation_id", "index")
        .group_by("conversation_id", maintain_order=True)
        .agg(conversation=pl.struct(*UTTERANCE.to_schema().keys()))
    )
    roots = requests.select(
        conversation_id="turn_id",
        first_turn_timestamp="timestamp",
        inherited_turns=pl.col("round") - 1,
    )
    result = (
        final.select("conversation_id", "own_turn_ids", "model", "timestamp", turn=pl.col("round"))
        .join(roots, on="conversation_id")
        .join(
            owned.filter(pl.col("turn_id") == pl.col("root_turn_id")).select(
                conversation_id="turn_id", branch_of_turn_id="branch_of_turn_id"
            ),
            on="conversation_id",
        )
        .join(most_frequent(user_turns, "ip", "round"), on="conversation_id", how="left")
        .join(most_frequent(user_turns, "user_agent", "round"), on="conversation_id", how="left")
        .join(
            most_frequent(user_turns, "accept_language", "round"), on="conversation_id", how="left"
        )
        .join(conversation_lists, on="conversation_id")
        .with_columns(pl.lit(partition_day_value(day)).alias(PARTITION_COLUMN))
        .sort("first_turn_timestamp", "conversation_id")
    )
    return result.select(LINKED_CONVERSATIONS_SCHEMA.names()).cast(
        LINKED_CONVERSATIONS_SCHEMA  # type: ignore[arg-type]
    )


# An orphan row but its partition, chain root and content (fetched once the rows are known).
_ORPHAN_LIGHT_COLUMNS = [
    c
    for c in ORPHANED_REQUESTS_SCHEMA.names()
    if c not in (PARTITION_COLUMN, "chain_root_turn_id", "messages", "response")
] + ["row"]


def _continuing(requests: pl.DataFrame, set_aside: pl.DataFrame) -> pl.Series:
    """Turn ids of the requests whose history a set-aside copy ends, by the linking rule's match
    (hash, fingerprint and model), the copy coming first in (timestamp, turn_id)."""
    ends = set_aside.select(
        *FINGERPRINT, prev_hash="current_hash", e_time="timestamp", e_turn="turn_id"
    )
    return (
        requests.filter(pl.col("round") > 1)
        .join(ends, on=["prev_hash", *FINGERPRINT])
        .filter(
            (pl.col("e_time") < pl.col("timestamp"))
            | ((pl.col("e_time") == pl.col("timestamp")) & (pl.col("e_turn") < pl.col("turn_id")))
        )["turn_id"]
        .unique()
    )


def link_window(
    window: pl.DataFrame,
    day: date,
    *,
    lookahead_days: int,
    earlier: pl.DataFrame | None = None,
    fetch: ContentFetcher | None = None,
) -> LinkResult:
    """Link the requests of ``window`` and keep what partition ``day`` owns.

    ``window`` holds requests (the ``REQUESTS_SCHEMA`` columns) of the days returned by
    ``window_days(day, lookahead_days)``; or, with ``fetch``, their ``LIGHT_WINDOW_SCHEMA``
    columns, and ``fetch`` reads the content of the rows kept (each day is in four windows,
    and its content, most of its bytes, is then read about once). ``earlier``: the
    ``COPY_COLUMNS`` of the raw requests of ``horizon_days(day, lookahead_days)`` (only those
    sharing a turn id with the window are needed), against which the window's copies of a turn
    id are judged too; without it, a copy whose first copy lies before the window is linked as
    if it were the only one.
    """
    if fetch is not None and MESSAGE_COUNT not in window.columns:
        raise ValueError(f"a window linked with fetch needs {MESSAGE_COUNT} (LIGHT_WINDOW_SCHEMA)")
    first_day, last_day = window_days(day, lookahead_days)
    requests, set_aside = _prepare(
        window, first_day, last_day, earlier, duplicate_horizon_days(lookahead_days)
    )

    fingerprint = [pl.col(c) for c in FINGERPRINT]
    requests = requests.with_columns(
        end_key=pl.struct(pl.col("current_hash"), *fingerprint).hash(),
        claim_key=pl.struct(pl.col("prev_hash"), *fingerprint).hash(),
    )
    ends = requests.select(key="end_key", e_seq="seq", e_turn="turn_id", e_ip="ip")
    claimants = requests.filter(pl.col("round") > 1).select(
        key="claim_key", r_seq="seq", r_turn="turn_id", r_ip="ip"
    )
    edges = claimants.join(ends, on="key").filter(pl.col("e_seq") < pl.col("r_seq"))
    # The 64-bit key narrows the join; equality of the full values decides it.
    exact = functools.reduce(
        operator.and_,
        (
            requests[r_col].gather(edges["r_seq"]) == requests[e_col].gather(edges["e_seq"])
            for r_col, e_col in (("prev_hash", "current_hash"), *((c, c) for c in FINGERPRINT))
        ),
    )
    edges = (
        edges.filter(exact)
        .with_columns(
            same_ip=(pl.col("r_ip") == pl.col("e_ip")).fill_null(False),
            group=pl.col("key"),
            contested=(pl.len().over("r_turn") > 1) | (pl.len().over("e_turn") > 1),
        )
        .with_columns(contested=pl.col("contested").any().over("group"))
    )
    simple = edges.filter(~pl.col("contested")).select(turn_id="r_turn", parent_turn_id="e_turn")
    contested = edges.filter("contested")
    contested_links, branch_pairs = _resolve_contested(contested)
    pair_schema = {"turn_id": pl.Int64, "parent_turn_id": pl.Int64}
    parents = pl.concat(
        [
            simple,
            pl.DataFrame(contested_links, schema=pair_schema, orient="row"),
        ]
    )
    branches = pl.DataFrame(branch_pairs, schema=pair_schema, orient="row")

    requests = (
        requests.join(parents, on="turn_id", how="left")
        .join(branches.rename({"parent_turn_id": "branch_of_turn_id"}), on="turn_id", how="left")
        .with_columns(
            kind=pl.when(pl.col("parent_turn_id").is_not_null())
            .then(pl.lit(None, dtype=pl.String))
            .when(pl.col("round") == 1)
            .then(pl.lit(RootKind.START))
            .when(pl.col("branch_of_turn_id").is_not_null())
            .then(pl.lit(RootKind.BRANCH))
            .when(pl.col("request_day") == first_day)
            .then(pl.lit(RootKind.EDGE))
            .otherwise(pl.lit(RootKind.ORPHAN))
        )
    )
    roots = _roots(requests, parents)
    requests = requests.join(roots, on="turn_id").join(
        requests.select(root_turn_id="turn_id", root_day="request_day", root_kind="kind"),
        on="root_turn_id",
    )

    lookahead_start = day - timedelta(days=lookahead_days)
    rooted_here = pl.col("root_day") == day
    owned = requests.filter(
        rooted_here & pl.col("root_kind").is_in([RootKind.START, RootKind.BRANCH])
    )
    orphan_chain = requests.filter(rooted_here & (pl.col("root_kind") == RootKind.ORPHAN))
    beyond = requests.filter(
        (pl.col("request_day") == day) & (pl.col("root_day") < lookahead_start)
    )
    continues_set_aside = _continuing(requests, set_aside)
    # A set-aside copy is owned by its own day, like a request beyond the lookahead.
    duplicates = set_aside.filter(pl.col("request_day") == day)
    null_id = pl.lit(None, dtype=pl.Int64)
    orphans = pl.concat(
        [
            part.select(*_ORPHAN_LIGHT_COLUMNS, chain_root_turn_id="root_turn_id")
            for part in (
                orphan_chain.with_columns(
                    reason=pl.when(pl.col("turn_id") != pl.col("root_turn_id"))
                    .then(pl.lit(OrphanReason.FOLLOWS_ORPHAN))
                    .when(pl.col("turn_id").is_in(continues_set_aside.implode()))
                    .then(pl.lit(OrphanReason.FOLLOWS_DUPLICATE_TURN_ID))
                    .otherwise(pl.lit(OrphanReason.PREDECESSOR_NOT_FOUND)),
                    detail=pl.lit(None, dtype=pl.String),
                ),
                beyond.with_columns(
                    reason=pl.lit(OrphanReason.BEYOND_LOOKAHEAD),
                    detail=pl.lit(None, dtype=pl.String),
                ),
                # In no chain: its turn id belongs to the first copy.
                duplicates.with_columns(
                    reason=pl.lit(OrphanReason.DUPLICATE_TURN_ID),
                    root_turn_id=null_id,
                    parent_turn_id=null_id,
                ),
            )
        ]
    ).with_columns(pl.lit(partition_day_value(day)).alias(PARTITION_COLUMN))
    orphans = orphans.sort("timestamp", "turn_id", "source_file", "line_number")
    orphans = (
        orphans.with_columns(_content(window, orphans["row"], fetch))
        .select(ORPHANED_REQUESTS_SCHEMA.names())
        .cast(ORPHANED_REQUESTS_SCHEMA)  # type: ignore[arg-type]
    )

    path_parents = pl.concat([parents, branches])
    conversations = _build_conversations(requests, owned, path_parents, day, window, fetch)

    on_day = requests.filter(pl.col("request_day") == day)
    stats = {
        "requests_in_window": requests.height,
        "requests_on_day": on_day.height,
        "owned_requests": owned.height + orphans.height,
        "conversations": conversations.height,
        "branch_conversations": int((conversations["branch_of_turn_id"].is_not_null()).sum()),
        "conversations_crossing_midnight": int(
            (
                conversations["timestamp"].dt.date()
                != conversations["first_turn_timestamp"].dt.date()
            ).sum()
        ),
        "linked_requests": owned.height,
        "orphaned_requests": orphans.height,
        "contested_groups": contested.select(pl.col("group").n_unique()).item(),
        "requests_beyond_lookahead": beyond.height,
        "requests_owned_by_earlier_days": on_day.filter(pl.col("root_day") < day)
        .filter(pl.col("root_day") >= lookahead_start)
        .height,
        # Later copies of a turn id: those of this day (rows of orphaned_requests), and all the
        # window holds (each day's own linking keeps its rows).
        "duplicate_turn_ids_set_aside": duplicates.height,
        "duplicate_turn_ids_in_window": set_aside.height,
        "duplicate_horizon_days": duplicate_horizon_days(lookahead_days),
    }
    for reason in (
        OrphanReason.PREDECESSOR_NOT_FOUND,
        OrphanReason.FOLLOWS_ORPHAN,
        OrphanReason.FOLLOWS_DUPLICATE_TURN_ID,
    ):
        stats[f"orphans_{reason}"] = orphans.filter(pl.col("reason") == reason).height
    decisions = requests.select(
        "turn_id", "parent_turn_id", "branch_of_turn_id", "kind", "root_turn_id"
    ).sort("turn_id")
    return LinkResult(
        conversations=conversations,
        orphans=orphans,
        decisions=decisions,
        set_aside=set_aside.select(*COPY_COLUMNS, "detail"),
        stats=stats,
    )
