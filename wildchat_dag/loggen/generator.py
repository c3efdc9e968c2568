"""Synthetic chatbot request logs in the raw log contract (version 1).

The generator is a discrete-event simulation: conversations start at diurnally distributed
times, and each pending turn sits in a heap keyed by its timestamp. Lines therefore come out
in global timestamp order and can be streamed straight into the day folder of their own
timestamp; memory holds only the conversations that are still active (plus the rare late
continuations waiting for their return) and one day's start times.
"""

from __future__ import annotations

import contextlib
import gzip as gzip_module
import heapq
import ipaddress
import math
import os
import queue
import random
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from wildchat_dag.loggen import text

SCHEMA_VERSION = 1
DEFAULT_FIRST_TURN_ID = 1_000_001

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
_EPOCH = date(1970, 1, 1)

MODELS = (
    "gpt-3.5-turbo-0301",
    "gpt-3.5-turbo-0613",
    "gpt-4-0314",
    "gpt-4-1106-preview",
    "gpt-4-0125-preview",
)
# WildChat is dominated by GPT-3.5 traffic.
_MODEL_WEIGHTS = (30.0, 40.0, 10.0, 12.0, 8.0)

# Turns per conversation are capped so one pathological conversation cannot dominate the output
# (full history makes a conversation's bytes quadratic in its length).
MAX_TURNS = 60

SHARD_RE = re.compile(r"^requests-(\d{2,})\.jsonl(\.gz)?$")

# Utilisation by UTC hour: a broad peak in the European afternoon / American morning and a
# trough in the small hours, which is how a global chatbot's traffic looks.
_HOUR_WEIGHTS = tuple(1.0 + 0.6 * math.cos(2 * math.pi * (h - 15) / 24) for h in range(24))
_HOUR_CUM = tuple(sum(_HOUR_WEIGHTS[: h + 1]) for h in range(24))


@dataclass(frozen=True)
class FeatureRates:
    """Rates of the special cases the pipeline must handle.

    Conversation-level rates are fractions of conversations, message-level rates fractions of
    user messages, request-level rates fractions of requests.
    """

    ip_change: float = 0.03
    """Conversations whose client IP changes from some turn on (fingerprint unchanged)."""
    shared_ip: float = 0.04
    """Conversations by users who share a NAT IP with other users (different user agents)."""
    regeneration: float = 0.04
    """Conversations with a regenerated reply (same history re-sent, new response)."""
    cross_midnight: float = 0.03
    """Conversations forced to start shortly before midnight UTC and continue after it."""
    late_continuation: float = 0.002
    """Conversations resumed more than two days after their last reply."""
    returning_user: float = 0.05
    """Conversations started by a user (IP + fingerprint) who already had another one."""
    english: float = 0.6
    """Conversations in English; the rest are spread over other languages."""
    empty_message: float = 0.015
    """User messages that are the empty string."""
    pii: float = 0.05
    """User messages carrying a PII-like string (name, email, phone, card, URL, IP)."""
    celebrity: float = 0.03
    """User messages mentioning a celebrity."""
    ip_field: float = 0.02
    """Requests that also carry the top-level ``ip`` field."""
    odd_xff: float = 0.03
    """Users whose X-Forwarded-For has an unusual but valid form (ports, brackets)."""
    ipv6: float = 0.15
    """Users with an IPv6 client address."""
    private_client_ip: float = 0.0005
    """Users whose client IP is (deliberately, rarely) in a private range."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"rate {name} must be within [0, 1], got {value}")


@dataclass
class GenerationSummary:
    """What a generate_logs run wrote, with counts of each special case."""

    files: list[Path] = field(default_factory=list)
    requests_per_day: dict[str, int] = field(default_factory=dict)
    conversations: int = 0
    requests: int = 0
    multi_turn_conversations: int = 0
    max_turns: int = 0
    ip_changes: int = 0
    shared_ip_groups: int = 0
    shared_ip_conversations: int = 0
    returning_user_conversations: int = 0
    regenerations: int = 0
    regenerated_conversations: int = 0
    midnight_crossings: int = 0
    late_continuations: int = 0
    truncated_at_end: int = 0
    empty_user_messages: int = 0
    pii: dict[str, int] = field(default_factory=dict)
    celebrity_mentions: int = 0
    ip_field_requests: int = 0
    odd_xff_users: int = 0
    ipv6_users: int = 0
    private_ip_users: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)

    @property
    def bytes_written(self) -> int:
        return sum(p.stat().st_size for p in self.files if p.exists())

    def describe(self) -> str:
        days = ", ".join(f"{d}: {n}" for d, n in sorted(self.requests_per_day.items()))
        non_en = sum(n for lang, n in self.languages.items() if lang != "en")
        lines = [
            f"wrote {len(self.files)} files ({self.bytes_written / 1e6:.1f} MB)",
            f"requests: {self.requests} ({days})",
            f"conversations: {self.conversations} ({self.multi_turn_conversations} multi-turn, "
            f"max {self.max_turns} turns, {non_en} non-English)",
            f"regenerations: {self.regenerations}; IP changes: {self.ip_changes}; "
            f"shared-IP groups: {self.shared_ip_groups} ({self.shared_ip_conversations} "
            f"conversations); returning users: {self.returning_user_conversations}",
            f"midnight crossings: {self.midnight_crossings}; late continuations: "
            f"{self.late_continuations}; cut at range end: {self.truncated_at_end}",
            f"empty user messages: {self.empty_user_messages}; celebrity mentions: "
            f"{self.celebrity_mentions}; PII: "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.pii.items())),
        ]
        return "\n".join(lines)


# --- time ------------------------------------------------------------------------------------


def date_to_us(day: date) -> int:
    """Microseconds since the Unix epoch at 00:00 UTC of ``day``."""
    return (day - _EPOCH).days * DAY_US


class TimestampFormatter:
    """Formats epoch microseconds as ``%Y-%m-%dT%H:%M:%S.%fZ`` without datetime per call."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def day(self, day_index: int) -> str:
        name = self._days.get(day_index)
        if name is None:
            name = (_EPOCH + timedelta(days=day_index)).isoformat()
            self._days[day_index] = name
        return name

    def __call__(self, us: int) -> str:
        day_index, rem = divmod(us, DAY_US)
        secs, micros = divmod(rem, SECOND_US)
        hours, secs = divmod(secs, 3600)
        minutes, secs = divmod(secs, 60)
        return f"{self.day(day_index)}T{hours:02d}:{minutes:02d}:{secs:02d}.{micros:06d}Z"


def diurnal_offset_us(rng: random.Random) -> int:
    """A time of day (microseconds after midnight) drawn from the diurnal traffic curve."""
    hour = rng.choices(range(24), cum_weights=_HOUR_CUM)[0]
    return hour * HOUR_US + rng.randrange(HOUR_US)


# --- network identities ----------------------------------------------------------------------

# First octets that are reserved, private, loopback, CGNAT, multicast or documentation-heavy;
# "public-looking" addresses avoid them entirely.
_NON_PUBLIC_FIRST_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203, *range(224, 256)})
_PUBLIC_FIRST_OCTETS = tuple(o for o in range(1, 224) if o not in _NON_PUBLIC_FIRST_OCTETS)
_DOC_V4_NETS = ("192.0.2.", "198.51.100.", "203.0.113.")
# Documentation prefix plus prefixes of large real ISPs (mobile carriers, Comcast, Deutsche
# Telekom, China Telecom), so IPv6 parsing is exercised on realistic values.
_V6_PREFIXES = (
    (0x2001, 0x0DB8),
    (0x2A02, None),
    (0x2600, 0x1700),
    (0x2409, 0x8A00),
    (0x240E, None),
)


def random_public_ipv4(rng: random.Random) -> str:
    return (
        f"{rng.choice(_PUBLIC_FIRST_OCTETS)}.{rng.randrange(256)}."
        f"{rng.randrange(256)}.{rng.randrange(1, 255)}"
    )


def random_doc_ipv4(rng: random.Random) -> str:
    return f"{rng.choice(_DOC_V4_NETS)}{rng.randrange(1, 255)}"


def random_ipv6(rng: random.Random) -> str:
    first, second = rng.choice(_V6_PREFIXES)
    groups = [first, rng.randrange(0x10000) if second is None else second]
    groups += [rng.randrange(0x10000) for _ in range(2)]
    # Interface ids are often sparse (::1, ::a:b), which is where compressed notation shows up.
    if rng.random() < 0.4:
        groups += [0, 0, 0, rng.randrange(1, 0x10000)]
    else:
        groups += [rng.randrange(0x10000) for _ in range(4)]
    value = 0
    for g in groups:
        value = (value << 16) | g
    return ipaddress.IPv6Address(value).compressed


def random_private_ipv4(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def random_client_ip(rng: random.Random, *, ipv6_rate: float, private_rate: float = 0.0) -> str:
    r = rng.random()
    if r < private_rate:
        return random_private_ipv4(rng)
    if r < private_rate + ipv6_rate:
        return random_ipv6(rng)
    # Mostly public-looking addresses, so that unrelated users rarely collide on an IP; the
    # documentation ranges are a recognisable minority.
    if rng.random() < 0.1:
        return random_doc_ipv4(rng)
    return random_public_ipv4(rng)


XFF_PLAIN = 0
XFF_PROXY = 1
XFF_PROXY_NO_SPACE = 2
XFF_ODD = 3


def random_proxy_ip(rng: random.Random) -> str:
    return rng.choice(
        (
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            f"198.51.100.{rng.randrange(1, 255)}",
        )
    )


def random_xff_style(rng: random.Random, odd_rate: float) -> int:
    if rng.random() < odd_rate:
        return XFF_ODD
    return rng.choices((XFF_PLAIN, XFF_PROXY, XFF_PROXY_NO_SPACE), weights=(60, 35, 5))[0]


def format_xff(ip: str, style: int, proxy: str, port: int) -> str:
    """X-Forwarded-For whose first entry is ``ip`` (possibly with a port / brackets)."""
    if style == XFF_PLAIN:
        return ip
    if style == XFF_PROXY:
        return f"{ip}, {proxy}"
    if style == XFF_PROXY_NO_SPACE:
        return f"{ip},{proxy}"
    if ":" in ip:
        return f"[{ip}]:{port}"
    return f"{ip}:{port}"


# --- output ----------------------------------------------------------------------------------


def shard_name(shard: int, gzip: bool) -> str:
    return f"requests-{shard:02d}.jsonl" + (".gz" if gzip else "")


class _IOThread:
    """Runs file writes (and so gzip compression) on one background thread, in order.

    zlib and file writes release the GIL, so compression overlaps with generating the next
    lines instead of adding to it. The queue is bounded, which bounds the memory in flight.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Callable[..., object], tuple[Any, ...]] | None] = (
            queue.Queue(maxsize=8)
        )
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="loggen-io", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((fn, args))

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    item[0](*item[1])
                except BaseException as exc:  # handed to the producer on its next call
                    self._error = exc


class DayShardWriter:
    """Writes lines into ``<root>/YYYY-MM-DD/requests-NN.jsonl[.gz]``, one day at a time.

    Callers must write days in non-decreasing order (lines in timestamp order), which lets the
    writer close a day for good as soon as the next one starts. Files are written under a
    temporary name and renamed when complete, so a reader never sees half a day; ``abort``
    removes the partial files instead.
    """

    _FLUSH_BYTES = 1 << 20

    def __init__(self, root: Path, *, gzip: bool, shards: int, compresslevel: int = 6) -> None:
        if shards < 1:
            raise ValueError(f"shards_per_day must be >= 1, got {shards}")
        self.root = Path(root)
        self.gzip = gzip
        self.shards = shards
        self.compresslevel = compresslevel
        self.files: list[Path] = []
        self._fmt = TimestampFormatter()
        self._day: int | None = None
        self._handles: dict[int, tuple[IO[bytes], IO[bytes], Path, Path]] = {}
        self._buffers: list[list[bytes]] = [[] for _ in range(shards)]
        self._sizes = [0] * shards
        self._io = _IOThread()

    def write(self, day_index: int, shard: int, line: bytes) -> None:
        if day_index != self._day:
            if self._day is not None and day_index < self._day:
                raise ValueError("lines must be written in timestamp order")
            self._close_day()
            self._open_day(day_index)
        buf = self._buffers[shard]
        buf.append(line)
        self._sizes[shard] += len(line)
        if self._sizes[shard] >= self._FLUSH_BYTES:
            self._flush(shard)

    def close(self) -> list[Path]:
        try:
            self._close_day()
        finally:
            self._day = None
            self._io.finish()
        return self.files

    def abort(self) -> None:
        """Stop after a failure: close and delete the files of the open day, keep none."""
        handles = list(self._handles.values())
        self._handles.clear()
        self._day = None
        try:
            # The caller is already raising; a second error from the I/O thread adds nothing.
            with contextlib.suppress(Exception):
                self._io.finish()
        finally:
            for out, raw, tmp, _ in handles:
                try:
                    out.close()
                    raw.close()
                finally:
                    tmp.unlink(missing_ok=True)

    def _open_day(self, day_index: int) -> None:
        self._day = day_index
        folder = self.root / self._fmt.day(day_index)
        folder.mkdir(parents=True, exist_ok=True)
        # A rerun with another shard count or compression must not leave stale shards behind.
        for old in folder.iterdir():
            if SHARD_RE.match(old.name):
                old.unlink()

    def _flush(self, shard: int) -> None:
        buf = self._buffers[shard]
        if not buf:
            return
        handle = self._handles.get(shard)
        if handle is None:
            assert self._day is not None
            final = self.root / self._fmt.day(self._day) / shard_name(shard, self.gzip)
            tmp = final.with_name(f".{final.name}.tmp")
            raw = open(tmp, "wb")  # noqa: SIM115 - closed in _close_day / abort
            out: IO[bytes] = raw
            if self.gzip:
                # mtime=0 and no embedded file name keep the bytes reproducible.
                out = gzip_module.GzipFile(
                    filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=self.compresslevel
                )
            handle = (out, raw, tmp, final)
            self._handles[shard] = handle
        self._io.submit(handle[0].write, b"".join(buf))
        buf.clear()
        self._sizes[shard] = 0

    def _close_day(self) -> None:
        if self._day is None:
            return
        for shard in range(self.shards):
            self._flush(shard)
        for shard in sorted(self._handles):
            out, raw, tmp, final = self._handles[shard]
            self._io.submit(_finish_file, out, raw, tmp, final)
            self.files.append(final)
        self._handles.clear()


def _finish_file(out: IO[bytes], raw: IO[bytes], tmp: Path, final: Path) -> None:
    out.close()
    if raw is not out:
        raw.close()
    os.replace(tmp, final)


# --- simulation ------------------------------------------------------------------------------


class _User:
    """One person at one browser: the fingerprint is fixed, the network address may move."""

    __slots__ = ("accept_language", "first_messages", "ip", "lang", "port", "proxy", "style", "ua")

    def __init__(
        self, ua: str, accept_language: str, lang: str, ip: str, style: int, proxy: str, port: int
    ) -> None:
        self.ua = ua
        self.accept_language = accept_language
        self.lang = lang
        self.ip = ip
        self.style = style
        self.proxy = proxy
        self.port = port
        # First prompts already used by this user: a returning user must not start a new
        # conversation with an identical history, which would be indistinguishable from a
        # regeneration of the old one.
        self.first_messages: set[str] = set()

    def headers(self) -> dict[str, str]:
        return {
            "user-agent": self.ua,
            "accept-language": self.accept_language,
            "x-forwarded-for": format_xff(self.ip, self.style, self.proxy, self.port),
        }


class _Conversation:
    __slots__ = (
        "client_ip",
        "first_day",
        "headers",
        "key",
        "lang",
        "last_day",
        "last_id",
        "late_after",
        "late_done",
        "late_next",
        "messages",
        "midnight_us",
        "model",
        "n_turns",
        "parent_id",
        "regen_turn",
        "regens_left",
        "regens_planned",
        "responses",
        "returning",
        "switch_turn",
        "turn",
        "user",
    )

    def __init__(self, key: str, user: _User, lang: str, model: str, n_turns: int) -> None:
        self.key = key
        self.user = user
        self.lang = lang
        self.model = model
        self.n_turns = n_turns
        self.turn = 0
        self.messages: list[dict[str, str]] = []
        self.headers = user.headers()
        self.client_ip = user.ip
        self.parent_id: int | None = None
        self.last_id: int | None = None
        # Replies given so far to the current history (more than one after a regeneration).
        self.responses: list[str] = []
        self.regen_turn = 0
        self.regens_planned = 0
        self.regens_left = 0
        self.switch_turn = 0
        self.late_after = 0
        self.late_next = False
        self.late_done = False
        self.returning = False
        self.midnight_us = 0
        self.first_day = -1
        self.last_day = -1


_NORMAL = 0
_SHARED_IP = 1
_MIDNIGHT = 2


def sample_turns(rng: random.Random) -> int:
    """Turns per conversation: mostly one, Lomax-tailed beyond (mean about 2.6)."""
    if rng.random() < 0.55:
        return 1
    extra = int(3.0 * (rng.random() ** -0.5 - 1.0))
    return min(2 + extra, MAX_TURNS)


class _Simulation:
    def __init__(
        self,
        out_root: Path,
        *,
        start_date: date,
        days: int,
        conversations_per_day: int,
        seed: int,
        gzip: bool,
        shards_per_day: int,
        mean_message_chars: int,
        truth_path: Path | None,
        rates: FeatureRates,
        first_turn_id: int,
    ) -> None:
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        if conversations_per_day < 0:
            raise ValueError(f"conversations_per_day must be >= 0, got {conversations_per_day}")
        if first_turn_id < 1:
            raise ValueError(f"first_turn_id must be positive, got {first_turn_id}")
        self.rng = random.Random(seed)
        self.rates = rates
        self.days = days
        self.cpd = conversations_per_day
        self.shards = shards_per_day
        self.base_us = date_to_us(start_date)
        self.end_us = self.base_us + days * DAY_US
        self.text = text.TextMaker(self.rng, mean_message_chars)
        self.writer = DayShardWriter(Path(out_root), gzip=gzip, shards=shards_per_day)
        self.fmt = TimestampFormatter()
        self.truth_path = truth_path
        self.truth: IO[bytes] | None = None
        self.next_turn_id = first_turn_id
        self.conv_seq = 0
        self.event_seq = 0
        self.heap: list[tuple[int, int, Any]] = []
        self.recent_users: list[_User] = []
        self.summary = GenerationSummary()
        self.requests_per_day: Counter[int] = Counter()
        self.pii: Counter[str] = Counter()
        self.languages: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        other = text.OTHER_LANGUAGE_WEIGHTS
        self.other_langs = tuple(other)
        self.other_weights = tuple(other.values())

    # -- identities --

    def _pick_lang(self) -> str:
        if self.rng.random() < self.rates.english:
            return "en"
        return self.rng.choices(self.other_langs, weights=self.other_weights)[0]

    def _new_user(self, ip: str | None = None, ua: str | None = None) -> _User:
        rng, rates, s = self.rng, self.rates, self.summary
        lang = self._pick_lang()
        style = random_xff_style(rng, rates.odd_xff)
        if ip is None:
            ip = random_client_ip(rng, ipv6_rate=rates.ipv6, private_rate=rates.private_client_ip)
        user = _User(
            ua=ua if ua is not None else text.random_user_agent(rng),
            accept_language=text.random_accept_language(rng, lang),
            lang=lang,
            ip=ip,
            style=style,
            proxy=random_proxy_ip(rng),
            port=rng.choice((443, 8080, 51234, rng.randrange(1024, 65536))),
        )
        s.odd_xff_users += style == XFF_ODD
        s.ipv6_users += ":" in ip
        s.private_ip_users += ip.startswith(("10.", "192.168."))
        return user

    def _remember(self, user: _User) -> None:
        # A bounded pool of recent users keeps memory flat however many users there are.
        if len(self.recent_users) < 4096:
            self.recent_users.append(user)
        else:
            self.recent_users[self.rng.randrange(4096)] = user

    # -- start times --

    def _load_day(self, day: int) -> list[int]:
        """Queue special starts of ``day`` on the heap; return its ordinary start times sorted."""
        rng, rates = self.rng, self.rates
        day_us = self.base_us + day * DAY_US
        last_day = day == self.days - 1
        normal: list[int] = []
        remaining = self.cpd
        # Groups average 5.5 members, so start one with this probability to hit the rate.
        group_p = rates.shared_ip / 5.5
        midnight_p = rates.cross_midnight if not last_day else 0.0
        while remaining > 0:
            r = rng.random()
            if r < group_p and remaining >= 2:
                size = min(remaining, rng.randint(3, 8))
                remaining -= size
                self._queue_group(day_us, size)
            elif r < group_p + midnight_p:
                remaining -= 1
                # Start shortly before midnight; _schedule pushes the second turn past it.
                t = day_us + DAY_US - rng.randrange(20 * SECOND_US, 10 * MINUTE_US)
                self._push(t, (_MIDNIGHT, None))
            else:
                remaining -= 1
                normal.append(day_us + diurnal_offset_us(rng))
        normal.sort()
        return normal

    def _queue_group(self, day_us: int, size: int) -> None:
        """Several users behind one NAT address, with distinct browsers, at overlapping times."""
        rng = self.rng
        ip = random_client_ip(rng, ipv6_rate=self.rates.ipv6 / 2)
        t0 = day_us + min(diurnal_offset_us(rng), DAY_US - 15 * MINUTE_US)
        seen: set[str] = set()
        self.summary.shared_ip_groups += 1
        for _ in range(size):
            ua = text.random_user_agent(rng)
            while ua in seen:
                ua = text.random_user_agent(rng)
            seen.add(ua)
            user = self._new_user(ip=ip, ua=ua)
            self._push(t0 + rng.randrange(10 * MINUTE_US), (_SHARED_IP, user))

    def _push(self, t: int, item: Any) -> None:
        self.event_seq += 1
        heapq.heappush(self.heap, (t, self.event_seq, item))

    # -- conversations --

    def _start(self, t: int, kind: int, payload: _User | None) -> None:
        rng, rates, s = self.rng, self.rates, self.summary
        n_turns = sample_turns(rng)
        returning = False
        if kind == _SHARED_IP:
            assert payload is not None
            user = payload
            n_turns = max(n_turns, 2)
            s.shared_ip_conversations += 1
        elif self.recent_users and rng.random() < rates.returning_user:
            user = rng.choice(self.recent_users)
            returning = True
            s.returning_user_conversations += 1
        else:
            user = self._new_user()
        self._remember(user)
        lang = user.lang
        model = rng.choices(MODELS, weights=_MODEL_WEIGHTS)[0]
        self.conv_seq += 1
        conv = _Conversation(f"conv-{self.conv_seq:09d}", user, lang, model, n_turns)
        conv.returning = returning
        if kind == _MIDNIGHT:
            conv.n_turns = max(conv.n_turns, 2)
            conv.midnight_us = (t // DAY_US + 1) * DAY_US
        if rng.random() < rates.regeneration:
            # Regenerate before a later turn when there is one, so the continuation shows
            # which reply the user kept.
            conv.regen_turn = rng.randint(1, max(1, conv.n_turns - 1))
            conv.regens_planned = 2 if rng.random() < 0.1 else 1
        if rng.random() < rates.ip_change:
            conv.n_turns = max(conv.n_turns, 2)
            conv.switch_turn = rng.randint(2, conv.n_turns)
        if rng.random() < rates.late_continuation:
            conv.n_turns = max(conv.n_turns, 2)
            conv.late_after = rng.randint(1, conv.n_turns - 1)
        s.conversations += 1
        self.languages[lang] += 1
        self.models[model] += 1
        self._step(conv, t)

    def _user_text(self, conv: _Conversation) -> str:
        rng, rates, s = self.rng, self.rates, self.summary
        first = conv.turn == 1
        returning_first = first and conv.returning
        if rng.random() < rates.empty_message and not returning_first:
            s.empty_user_messages += 1
            content = ""
        else:
            while True:
                content = self.text.user(conv.lang)
                if rng.random() < rates.celebrity:
                    content = f"{content} {text.celebrity_snippet(rng)}"
                    s.celebrity_mentions += 1
                if rng.random() < rates.pii:
                    kind, snippet = text.pii_snippet(rng)
                    self.pii[kind] += 1
                    # Introductions open a message, sign-offs and contact details close it.
                    if snippet.startswith(("My name", "I am")):
                        content = f"{snippet}\n{content}"
                    else:
                        content = f"{content}\n{snippet}"
                if not returning_first or content not in conv.user.first_messages:
                    break
        if first:
            conv.user.first_messages.add(content)
        return content

    def _response(self, conv: _Conversation, user_text: str) -> str:
        if user_text == "":
            return self.text.assistant_for_empty(conv.lang)
        return self.text.assistant(conv.lang)

    def _emit(
        self,
        conv: _Conversation,
        t: int,
        response: str,
        parent: int | None,
        *,
        regeneration: bool,
        late: bool,
    ) -> tuple[int, int]:
        rng = self.rng
        turn_id = self.next_turn_id
        self.next_turn_id += 1
        # Replies stream at a few dozen characters a second after a short first-token delay.
        delay = 700_000 + len(response) * rng.randrange(3_000, 12_000)
        resp_us = t + min(delay, 90 * SECOND_US) + rng.randrange(1000)
        fmt = self.fmt
        record: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "turn_id": turn_id,
            "timestamp": fmt(t),
            "model": conv.model,
            "headers": conv.headers,
        }
        if rng.random() < self.rates.ip_field:
            record["ip"] = conv.client_ip
            self.summary.ip_field_requests += 1
        record["messages"] = conv.messages
        record["response"] = response
        record["response_timestamp"] = fmt(resp_us)
        day = t // DAY_US
        shard = rng.randrange(self.shards) if self.shards > 1 else 0
        self.writer.write(day, shard, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.requests_per_day[day] += 1
        if conv.first_day < 0:
            conv.first_day = day
        conv.last_day = day
        if self.truth is not None:
            self.truth.write(
                orjson.dumps(
                    {
                        "turn_id": turn_id,
                        "conversation_key": conv.key,
                        "parent_turn_id": parent,
                        "is_regeneration": regeneration,
                        "late_continuation": late,
                        "day": fmt.day(day),
                    },
                    option=orjson.OPT_APPEND_NEWLINE,
                )
            )
        return turn_id, resp_us

    def _step(self, conv: _Conversation, t: int) -> None:
        rng, s = self.rng, self.summary
        if conv.regens_left:
            # Same messages list, untouched since the original request: an identical history.
            s.regenerated_conversations += conv.regens_left == conv.regens_planned
            conv.regens_left -= 1
            # A regenerated reply must differ from every earlier reply to this history, or the
            # continuation would not tell which one the user kept.
            user_text = conv.messages[-1]["content"]
            response = self._response(conv, user_text)
            for _ in range(5):
                if response not in conv.responses:
                    break
                response = self._response(conv, user_text)
            while response in conv.responses:
                response += " " + self.text.assistant(conv.lang)
            turn_id, resp_us = self._emit(
                conv, t, response, conv.parent_id, regeneration=True, late=False
            )
            s.regenerations += 1
        else:
            conv.turn += 1
            if conv.turn == conv.switch_turn:
                self._switch_ip(conv)
            user_text = self._user_text(conv)
            conv.messages.append({"role": "user", "content": user_text})
            conv.parent_id = conv.last_id
            late = conv.late_next
            conv.late_next = False
            response = self._response(conv, user_text)
            turn_id, resp_us = self._emit(
                conv, t, response, conv.parent_id, regeneration=False, late=late
            )
            if conv.turn == conv.regen_turn:
                conv.regens_left = conv.regens_planned
            conv.responses.clear()
        conv.responses.append(response)
        conv.last_id = turn_id

        if conv.regens_left:
            self._schedule(conv, resp_us + rng.randrange(2 * SECOND_US, 90 * SECOND_US))
            return
        conv.messages.append({"role": "assistant", "content": response})
        if conv.turn >= conv.n_turns:
            self._finish(conv)
            return
        # Reading the reply and typing the next prompt: median ~40 s, long tail to hours.
        think = min(rng.lognormvariate(math.log(40.0), 1.0), 3 * 3600.0)
        t_next = resp_us + int(max(think, 2.0) * SECOND_US)
        if conv.midnight_us:
            if t_next < conv.midnight_us:
                t_next = conv.midnight_us + rng.randrange(SECOND_US, 180 * SECOND_US)
            conv.midnight_us = 0
        if conv.turn == conv.late_after:
            # More than two days later, but still inside the generated range.
            room = self.end_us - resp_us - 2 * DAY_US - 10 * MINUTE_US
            if room > 0:
                t_next = (
                    resp_us + 2 * DAY_US + 5 * MINUTE_US + rng.randrange(min(room, 20 * HOUR_US))
                )
                conv.late_next = True
                conv.late_done = True
                s.late_continuations += 1
        self._schedule(conv, t_next)

    def _switch_ip(self, conv: _Conversation) -> None:
        user = conv.user
        old = user.ip
        while user.ip == old:
            user.ip = random_client_ip(self.rng, ipv6_rate=self.rates.ipv6)
        conv.headers = user.headers()
        conv.client_ip = user.ip
        self.summary.ip_changes += 1

    def _schedule(self, conv: _Conversation, t: int) -> None:
        if t >= self.end_us:
            # The log snapshot ends here; the rest of this conversation is never seen.
            self.summary.truncated_at_end += 1
            self._finish(conv)
            return
        self._push(t, conv)

    def _finish(self, conv: _Conversation) -> None:
        s = self.summary
        s.multi_turn_conversations += conv.turn > 1
        s.max_turns = max(s.max_turns, conv.turn)
        if conv.last_day > conv.first_day and not conv.late_done:
            s.midnight_crossings += 1
        # Release the history now; a finished conversation is never referenced again.
        conv.messages = []

    # -- main loop --

    def run(self) -> GenerationSummary:
        if self.truth_path is not None:
            self.truth_path.parent.mkdir(parents=True, exist_ok=True)
            self.truth = open(self.truth_path, "wb", buffering=1 << 20)  # noqa: SIM115
        try:
            self._loop()
        except BaseException:
            self.writer.abort()
            raise
        else:
            files = self.writer.close()
        finally:
            if self.truth is not None:
                self.truth.close()
        s = self.summary
        s.files = files
        s.requests = sum(self.requests_per_day.values())
        s.requests_per_day = {self.fmt.day(d): n for d, n in sorted(self.requests_per_day.items())}
        s.pii = dict(sorted(self.pii.items()))
        s.languages = dict(self.languages.most_common())
        s.models = dict(self.models.most_common())
        return s

    def _loop(self) -> None:
        heap = self.heap
        normal = self._load_day(0)
        next_day = 1
        i = 0
        inf = self.end_us + 10 * DAY_US
        while True:
            head_normal = normal[i] if i < len(normal) else inf
            head_heap = heap[0][0] if heap else inf
            t = min(head_normal, head_heap)
            if next_day < self.days and t >= self.base_us + next_day * DAY_US:
                # Nothing earlier is pending, so the next day's starts can be merged in now.
                normal = self._load_day(next_day)
                i = 0
                next_day += 1
                continue
            if t >= inf:
                break
            if head_heap <= head_normal:
                _, _, item = heapq.heappop(heap)
                if isinstance(item, _Conversation):
                    self._step(item, head_heap)
                else:
                    self._start(head_heap, item[0], item[1])
            else:
                i += 1
                self._start(head_normal, _NORMAL, None)


def generate_logs(
    out_root: Path | str,
    *,
    start_date: date,
    days: int,
    conversations_per_day: int,
    seed: int,
    gzip: bool = True,
    shards_per_day: int = 1,
    mean_message_chars: int = 400,
    truth_path: Path | str | None = None,
    rates: FeatureRates | None = None,
    first_turn_id: int = DEFAULT_FIRST_TURN_ID,
) -> GenerationSummary:
    """Write ``days`` days of synthetic request logs under ``out_root``.

    ``conversations_per_day`` conversations start on each day. Output is byte-identical for the
    same arguments. Lines whose timestamp would fall after the last day are not written (the
    conversation is cut there), so every folder is within the requested range; for the same
    reason late continuations (a return more than two days later) need ``days >= 3``, and forced
    midnight crossings are only planned on days before the last one. Runs stream: memory holds
    the active conversations and one day's start times, not the output.

    ``truth_path`` gets one JSON line per request with the generator's own view of it
    (``turn_id``, ``conversation_key``, ``parent_turn_id``, ``is_regeneration``,
    ``late_continuation`` -- true on the request that resumes after the gap -- and ``day``).
    ``rates`` tunes how often each special case occurs; ``first_turn_id`` lets separately
    generated ranges use disjoint ids. Existing ``requests-NN.jsonl[.gz]`` files in the day
    folders written are replaced.
    """
    sim = _Simulation(
        Path(out_root),
        start_date=start_date,
        days=days,
        conversations_per_day=conversations_per_day,
        seed=seed,
        gzip=gzip,
        shards_per_day=shards_per_day,
        mean_message_chars=mean_message_chars,
        truth_path=Path(truth_path) if truth_path is not None else None,
        rates=rates if rates is not None else FeatureRates(),
        first_turn_id=first_turn_id,
    )
    return sim.run()
