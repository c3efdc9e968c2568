"""Client IP addresses beyond the raw layer: keyed hashing, and finding raw IPs in text.

``hashed_ip`` is WildChat's scheme, sha256(salt + ip) as 64 hex digits, over the canonical
address that ingest stores. The salt is a secret: without one, every IPv4 address can be hashed
in minutes (2^32 of them) and the hashes reversed, so an unsalted or short salt is refused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import secrets
from pathlib import Path

import polars as pl

MIN_SALT_CHARS = 16
SALT_ENV_VAR = "WILDCHAT_IP_SALT"

# Candidate literals; ``ipaddress`` decides which are addresses. Digits or dots right before or
# after an IPv4 literal make it part of something else (a version string 1.2.3.4.5).
_IPV4 = r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])"
# Runs of hex digits, colons and dots with at least two colons; the address is found inside
# (after a label such as "IP:", before a closing colon).
_IPV6_RUN = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"
IP_LITERAL = re.compile(f"{_IPV4}|{_IPV6_RUN}")
# A cheap test, vectorised: texts without it hold no literal.
IP_LITERAL_HINT = r"[0-9]\.[0-9]|[0-9A-Fa-f]*:[0-9A-Fa-f]*:"


class SaltError(RuntimeError):
    """No usable salt: the run must not write hashed IPs."""


def salt_problem(salt: str | None) -> str | None:
    """Why ``salt`` cannot be used, or None."""
    if not salt:
        return (
            f"{SALT_ENV_VAR} is not set, so runs that write hashed IPs refuse to start. "
            "hashed_ip = sha256(salt + ip) needs a secret salt: an unsalted hash of an IPv4 "
            f"address is reversed by hashing all 2^32 addresses. Set {SALT_ENV_VAR} to a long "
            "random secret (e.g. `openssl rand -hex 32`) and keep it, or run in demo mode "
            "(WILDCHAT_MODE=demo), which makes a per-install salt."
        )
    if len(salt) < MIN_SALT_CHARS:
        return (
            f"{SALT_ENV_VAR} has {len(salt)} characters; at least {MIN_SALT_CHARS} are needed so "
            "that the salt cannot be guessed and the hashed IPs reversed."
        )
    return None


def check_salt(salt: str | None) -> str:
    problem = salt_problem(salt)
    if problem:
        raise SaltError(problem)
    assert salt is not None
    return salt


def hash_ip(ip: str, salt: str) -> str:
    return hashlib.sha256((salt + ip).encode("utf-8")).hexdigest()


def hash_ips(ips: pl.Series, salt: str) -> pl.Series:
    """``hash_ip`` over a column, once per distinct address; null stays null."""
    check_salt(salt)
    distinct = ips.drop_nulls().unique()
    mapping = {ip: hash_ip(ip, salt) for ip in distinct.to_list()}
    return ips.replace_strict(mapping, default=None, return_dtype=pl.String).alias(
        ips.name or "hashed_ip"
    )


def salt_fingerprint(salt: str) -> str:
    """Tells releases made with different salts apart without revealing the salt."""
    return hashlib.sha256(b"wildchat-dag salt fingerprint\0" + salt.encode()).hexdigest()[:16]


def ensure_demo_salt(path: Path) -> tuple[str, bool]:
    """The per-install demo salt at ``path``, created (mode 0600) if absent: ``(salt, created)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        salt = path.read_text(encoding="ascii").strip()
        check_salt(salt)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return salt, False
    salt = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(salt + "\n")
    return salt, True


def canonical_ip(literal: str) -> str | None:
    try:
        return ipaddress.ip_address(literal).compressed
    except ValueError:
        return None


def notations(address: str) -> list[str]:
    """An address as ingest may have stored it: IPv4 also as IPv4-mapped IPv6, and back."""
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv4Address):
        return [address, ipaddress.ip_address(f"::ffff:{address}").compressed]
    if parsed.ipv4_mapped is not None:
        return [address, str(parsed.ipv4_mapped)]
    return [address]


def _longest_address(run: str, first: int) -> tuple[int, int, str] | None:
    """The longest stretch of ``run`` from ``first`` on that is an IPv6 (or mapped) address; a
    trailing colon (end of a sentence, "addr:port") may be cut off."""
    ends = [len(run)] + [i for i in range(len(run) - 1, first, -1) if run[i] == ":"]
    for end in ends:
        address = canonical_ip(run[first:end])
        if address is not None:
            return first, end, address
    return None


def _addresses_in_run(run: str) -> list[tuple[int, int, str]]:
    """IPv6 addresses in a run of hex digits, colons and dots.

    The run may begin with a label that is hex too ("ab:2001:db8::5" is an address, and so is
    "2001:db8::5"): the address after the first single colon is tried as well.
    """
    first = 1 if run.startswith(":") and not run.startswith("::") else 0
    found = [_longest_address(run, first)]
    colon = run.find(":", first)
    if colon > first and run[colon + 1 : colon + 2] != ":":
        found.append(_longest_address(run, colon + 1))
    return sorted({f for f in found if f is not None})


def find_ip_literals(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, address)`` for the IP addresses written in ``text``, canonical, and once
    more in their other notation where they have one (``notations``).

    Made for matching against known addresses, so it errs towards recall: after a hex-looking
    label ("IPv6:2001:db8::5") both readings are returned; the extra one is never a client's.
    """
    found = []
    for match in IP_LITERAL.finditer(text):
        literal = match.group()
        if "." in literal and ":" not in literal:
            address = canonical_ip(literal)
            spans = [(0, len(literal), address)] if address else []
        else:
            spans = _addresses_in_run(literal.rstrip("."))
        for start, end, address in spans:
            found.extend(
                (match.start() + start, match.start() + end, a) for a in notations(address)
            )
    return found


def ip_literals_in(texts: pl.Series) -> pl.DataFrame:
    """Each distinct address written in ``texts``: ``row`` (position in texts) and ``ip``."""
    hinted = texts.str.contains(IP_LITERAL_HINT).fill_null(False)
    rows, addresses = [], []
    for row, text in zip(hinted.arg_true().to_list(), texts.filter(hinted).to_list(), strict=True):
        for address in {a for _, _, a in find_ip_literals(text)}:
            rows.append(row)
            addresses.append(address)
    return pl.DataFrame({"row": rows, "ip": addresses}, schema={"row": pl.Int64, "ip": pl.String})
