"""Embedded defaults, each overridable by an environment variable.

Partitions and the lookahead are fixed when the code location loads, so they are read here;
paths are resource configuration and can also be changed per run in the launchpad.
"""

from __future__ import annotations

import functools
import logging
import os
from datetime import date, timedelta
from pathlib import Path

from wildchat_dag.core.ip_addresses import SALT_ENV_VAR, ensure_demo_salt, salt_problem
from wildchat_dag.defs.anonymization.redaction_rules import DEFAULT_RULES_PATH


def home() -> Path:
    return Path(os.environ.get("WILDCHAT_HOME", Path.cwd() / ".wildchat")).resolve()


def default_log_root() -> str:
    return os.environ.get("WILDCHAT_LOG_ROOT", str(home() / "logs"))


def default_duckdb_path() -> str:
    return os.environ.get("WILDCHAT_DUCKDB_PATH", str(home() / "warehouse.duckdb"))


def geoip_path() -> str | None:
    """A GeoLite2/GeoIP2 City database or a folder of dated snapshots; None: the 2018 snapshot
    shipped in maxminddb-geolite2."""
    return os.environ.get("WILDCHAT_GEOIP_PATH") or None


def toxicity_threshold() -> float:
    """Detoxify toxicity above which an utterance is toxic (WildChat: 0.1); it versions the
    toxic flags."""
    value = float(os.environ.get("WILDCHAT_TOXICITY_THRESHOLD", "0.1"))
    if not 0.0 <= value <= 1.0:
        raise ValueError("WILDCHAT_TOXICITY_THRESHOLD must be between 0 and 1")
    return value


def release_root() -> str:
    return os.environ.get("WILDCHAT_RELEASE_ROOT", str(home() / "releases"))


def search_root() -> str:
    """The releases' full-text indexes (defs/browse), read by ``python -m wildchat_dag.browse``."""
    return os.environ.get("WILDCHAT_SEARCH_ROOT", str(home() / "search"))


def takedown_ledger_path() -> str:
    """The takedown ledger (wildchat_dag/defs/takedowns/ledger.py): WILDCHAT_TAKEDOWN_LEDGER,
    else takedowns.jsonl under the home folder. Keep it with the warehouse's backups."""
    return os.environ.get("WILDCHAT_TAKEDOWN_LEDGER", str(home() / "takedowns.jsonl"))


def release_includes_unscored() -> bool:
    """Whether the releases keep conversations a moderation scorer did not score (toxicity or
    sexual/minors unknown). Off in production; on in demo mode, where no scorer can run, and
    the card then says not to publish."""
    default = "1" if demo_mode() else "0"
    return os.environ.get("WILDCHAT_RELEASE_INCLUDE_UNSCORED", default) == "1"


def env_or_none(name: str) -> str | None:
    return os.environ.get(name) or None


def _date_setting(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date, YYYY-MM-DD: {value!r}") from None


def partitions_start_date() -> date:
    """The first daily partition (UTC)."""
    return _date_setting("WILDCHAT_START_DATE", os.environ.get("WILDCHAT_START_DATE", "2024-01-01"))


# The demo's default number of days of sample logs (``--days``).
DEMO_DAYS = 3


def partitions_end_date() -> date | None:
    """The last daily partition (UTC, inclusive); None: every day that has ended.

    ``WILDCHAT_END_DATE`` sets it. Otherwise production keeps the range open, while demo mode
    ends it at the demo's last day of logs: its sample days are long past, and an open range
    would show every partition since as missing (and make "Materialize all" target each).
    """
    start = partitions_start_date()
    value = os.environ.get("WILDCHAT_END_DATE")
    end = _date_setting("WILDCHAT_END_DATE", value) if value else None
    if end is None and demo_mode():
        end = demo_last_day(start)
    if end is not None and end < start:
        raise ValueError(f"WILDCHAT_END_DATE ({end}) is before WILDCHAT_START_DATE ({start})")
    return end


def log_days(log_root: Path, start: date) -> list[str]:
    """The day folders (``YYYY-MM-DD``) under ``log_root`` from ``start`` on, oldest first."""
    if not log_root.is_dir():
        return []
    days = []
    for folder in log_root.iterdir():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.is_dir() and day >= start and folder.name == day.isoformat():
            days.append(folder.name)
    return sorted(days)


def demo_last_day(start: date) -> date:
    """The demo's last day: its latest log folder, or, before it generated any (the UI may load
    the code first), the last of its default days."""
    days = log_days(Path(default_log_root()), start)
    if days:
        return date.fromisoformat(days[-1])
    return start + timedelta(days=DEMO_DAYS - 1)


def link_lookahead_days() -> int:
    days = int(os.environ.get("WILDCHAT_LINK_LOOKAHEAD_DAYS", "1"))
    if days < 1:
        raise ValueError("WILDCHAT_LINK_LOOKAHEAD_DAYS must be at least 1")
    return days


def redaction_rules_path() -> Path:
    """The redaction rules file; its hash versions the redaction assets."""
    return Path(os.environ.get("WILDCHAT_REDACTION_RULES", DEFAULT_RULES_PATH)).resolve()


def demo_mode() -> bool:
    """Demo mode (``WILDCHAT_MODE=demo``, set by scripts/demo.sh and scripts/ui.sh) may make up
    the secrets a production run must be given, such as the IP salt."""
    return os.environ.get("WILDCHAT_MODE", "production") == "demo"


@functools.cache
def ip_salt_source() -> str:
    """Where ``WILDCHAT_IP_SALT`` comes from; in demo mode, a per-install salt if none is set.

    The salt reaches the resources only through the ``WILDCHAT_IP_SALT`` environment variable,
    so this puts the demo salt there (for this process and the run processes it starts).
    """
    if SALT_ENV_VAR not in os.environ and not demo_mode():
        # Runs that hash IPs will not start; say why where the code location loads.
        logging.getLogger("wildchat_dag").warning(salt_problem(None))
    if SALT_ENV_VAR in os.environ or not demo_mode():
        return f"environment variable {SALT_ENV_VAR}"
    path = home() / "ip_salt"
    salt, created = ensure_demo_salt(path)
    os.environ[SALT_ENV_VAR] = salt
    note = f"demo mode: per-install salt in {path} (mode 0600)"
    if created:
        logging.getLogger("wildchat_dag").warning(
            f"Demo mode: generated a per-install IP salt at {path} (mode 0600). hashed_ip values "
            f"are only comparable between runs that use it; set {SALT_ENV_VAR} for real data."
        )
    return note


def automation_on_by_default() -> bool:
    """Whether the nightly schedule, the new-logs sensor and the automation-condition sensor
    start running as soon as a daemon loads the code. On in production; off in demo mode,
    whose sample days are long past (a toggle in the UI, or ``dagster schedule start``, turns
    them on). ``WILDCHAT_AUTOMATION``
    (``on``/``off``) decides either way."""
    default = "off" if demo_mode() else "on"
    value = os.environ.get("WILDCHAT_AUTOMATION", default)
    if value not in ("on", "off"):
        raise ValueError("WILDCHAT_AUTOMATION must be 'on' or 'off'")
    return value == "on"


def nightly_cron() -> str:
    """When the nightly run starts (UTC): 02:00 by default, once late log lines have landed."""
    return os.environ.get("WILDCHAT_NIGHTLY_CRON", "0 2 * * *")


def log_scan_interval_seconds() -> int:
    return int(os.environ.get("WILDCHAT_LOG_SCAN_INTERVAL_SECONDS", "60"))


def log_settle_seconds() -> float:
    """How long a day folder's files must have been left unchanged before the sensor launches
    the day: the service may still be writing to them."""
    return float(os.environ.get("WILDCHAT_LOG_SETTLE_SECONDS", "120"))


def quarantine_warn_rate() -> float:
    """Share of a day's log lines quarantined above which the quarantine_rate_below_threshold
    check warns (1% by default). Read when the check runs, so a change needs no reload."""
    value = float(os.environ.get("WILDCHAT_QUARANTINE_WARN_RATE", "0.01"))
    if not 0.0 <= value <= 1.0:
        raise ValueError("WILDCHAT_QUARANTINE_WARN_RATE must be between 0 and 1")
    return value


OPENAI_BASE_URL_ALLOWLIST_ENV = "WILDCHAT_OPENAI_BASE_URL_ALLOWLIST"


def openai_base_url_allowlist() -> tuple[str, ...]:
    """Where, beyond OpenAI's API and loopback addresses, the ``openai`` resource may send the
    API key and the texts: hosts (``gateway.example.com``, https only) or URL prefixes
    (``http://litellm:4000/v1``), separated by commas or spaces. Read from the environment
    where the step runs, never from run config: whoever launches a run must not be able to
    point the key and the texts at a server of theirs."""
    value = os.environ.get(OPENAI_BASE_URL_ALLOWLIST_ENV, "")
    return tuple(entry for entry in value.replace(",", " ").split() if entry)
