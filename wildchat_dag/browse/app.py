"""The review app: search a release, read a conversation, and see why each span was redacted.

Read-only and server-rendered (FastAPI with Jinja templates, autoescaped). It reads:

- a release (its Parquet shards) and the release's search index (the ``<release>_search_index``
  asset, tantivy): search, facets and the conversation view;
- for reviewers on the operator's machine, the warehouse: the anonymized layer and the stored
  detections, for the redaction review and the diff between two versions of the rules.

What it shows of the warehouse is anonymized text only (``redaction_review``): no page holds a
raw value that the rules redact.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.templating import Jinja2Templates

from wildchat_dag.core.sanitize import sanitize_text
from wildchat_dag.defs.anonymization.pii_frequency import FrequencyStore
from wildchat_dag.defs.anonymization.redaction_review import (
    NotInWarehouse,
    RulesDiff,
    diff_in_warehouse,
    review_conversation,
)
from wildchat_dag.defs.anonymization.redaction_rules import RedactionRules, load_rules
from wildchat_dag.defs.browse.release_reader import (
    ReleaseNotFound,
    conversation_view,
    read_conversation,
    read_index_manifest,
    release_shards,
    segments,
)
from wildchat_dag.defs.browse.search_index import FACETS, MAX_QUERY_CHARS, SearchIndex
from wildchat_dag.defs.checks.raw_ip_scan import client_ips_among
from wildchat_dag.defs.pii_detection.pii_detection import detection_version
from wildchat_dag.defs.release.release_versions import history_root_of, load_versions
from wildchat_dag.resources.warehouse import Warehouse

TEMPLATES = Path(__file__).parent / "templates"
PAGE_SIZE = 20
# Deeper pages are a crawl, not a search: refine the query instead.
MAX_PAGE = 500
DIFF_PAGE_CONVERSATIONS = 25
FACET_LABELS = {
    "toxic": "Toxic",
    "redacted": "Redacted",
    "model": "Model",
    "language": "Language",
    "country": "Country",
    "state": "State",
    "hashed_ip": "Hashed IP",
    "turns": "Turns",
}


class BadRequest(ValueError):
    """A request the app cannot answer as asked: shown as a 400 page."""


@dataclass
class BrowseConfig:
    release: str
    release_root: Path
    search_root: Path
    # The warehouse (DuckDB file) for the redaction review; None turns the review off.
    database: str | None = None
    # Versions of the redaction rules by name; the first is the one the warehouse applies.
    rules: dict[str, Path] = field(default_factory=dict)
    lock_timeout_s: float = 30.0


class Browser:
    """What the pages read, opened once and shared by the requests."""

    def __init__(self, config: BrowseConfig) -> None:
        self.config = config
        self.index_folder = config.search_root / config.release
        self.release_folder = config.release_root / config.release
        self._lock = threading.Lock()
        self._index: SearchIndex | None = None
        self._index_key: tuple | None = None
        self.warehouse = (
            Warehouse(database=config.database, lock_timeout_s=config.lock_timeout_s)
            if config.database and Path(config.database).exists()
            else None
        )
        self._diffs: dict[tuple[str, str, float], RulesDiff] = {}

    # -- the release and its index ------------------------------------------------------------

    def index(self) -> SearchIndex:
        """The index, re-opened when it was rebuilt (the asset swaps the folder in whole)."""
        manifest = self.index_manifest()
        key = (manifest.get("built_at"), manifest.get("release_version"))
        with self._lock:
            if self._index is None or key != self._index_key:
                self._index = SearchIndex.open(self.index_folder)
                self._index_key = key
            return self._index

    def index_manifest(self) -> dict[str, Any]:
        return read_index_manifest(self.index_folder)

    def release_version(self) -> str | None:
        try:
            versions = load_versions(history_root_of(self.config.release_root), self.config.release)
        except (OSError, ValueError):
            return None
        return versions[-1].version if versions else None

    def staleness(self) -> str | None:
        """Why the index may not be the release's, for a banner; None when it is."""
        indexed = self.index_manifest().get("release_version")
        current = self.release_version()
        if current is not None and indexed != current:
            return (
                f"The index is of release version {indexed}; the {self.config.release} release "
                f"is now at {current}. Materialize {self.config.release}_search_index to search "
                "the current version."
            )
        return None

    def shards(self) -> list[tuple[Path, int]]:
        return release_shards(self.release_folder)

    # -- the rules ----------------------------------------------------------------------------

    def rules_versions(self) -> list[dict[str, Any]]:
        versions = []
        for name, path in self.config.rules.items():
            entry: dict[str, Any] = {"name": name, "path": str(path)}
            try:
                rules = load_rules(path)
            except Exception as error:  # a broken rules file is listed, with why
                entry["error"] = sanitize_text(f"{type(error).__name__}: {error}")
            else:
                entry.update(
                    hash=rules.rules_hash[:16],
                    detection=detection_version(rules)[:16],
                    entities=", ".join(rules.redacted_entities),
                )
            versions.append(entry)
        return versions

    def rules(self, name: str) -> RedactionRules:
        path = self.config.rules.get(name)
        if path is None:
            raise BadRequest(f"no rules version named {name!r}")
        return load_rules(path)

    def current_rules_name(self) -> str:
        return next(iter(self.config.rules))

    def diff(self, a: str, b: str) -> RulesDiff:
        assert self.warehouse is not None
        stamp = Path(self.warehouse.database).stat().st_mtime
        rules_a, rules_b = self.rules(a), self.rules(b)
        key = (rules_a.rules_hash, rules_b.rules_hash, stamp)
        with self._lock:
            cached = self._diffs.get(key)
        if cached is None:
            cached = diff_in_warehouse(self.warehouse.query, rules_a, rules_b)
            with self._lock:
                self._diffs = {key: cached}
        return cached


def _page_number(value: str | None) -> int:
    if value in (None, ""):
        return 1
    try:
        page = int(value)
    except ValueError:
        raise BadRequest(f"page must be a number, not {sanitize_text(value, 40)!r}") from None
    if not 1 <= page <= MAX_PAGE:
        raise BadRequest(f"page must be between 1 and {MAX_PAGE}")
    return page


def _highlighter(text: str) -> Callable[[str], list[tuple[str, bool]]]:
    """Marks the query's words in a preview (case-insensitive)."""
    words = sorted(
        {w for w in re.findall(r"\w+", text.lower()) if len(w) > 1}, key=len, reverse=True
    )
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None

    def highlight(preview: str) -> list[tuple[str, bool]]:
        if pattern is None or not preview:
            return [(preview, False)]
        pieces, position = [], 0
        for match in pattern.finditer(preview):
            if match.start() > position:
                pieces.append((preview[position : match.start()], False))
            pieces.append((match.group(), True))
            position = match.end()
        pieces.append((preview[position:], False))
        return pieces

    return highlight


def create_app(config: BrowseConfig) -> FastAPI:
    if not config.rules:
        raise ValueError("the app needs at least one version of the redaction rules")
    browser = Browser(config)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    app = FastAPI(
        title=f"wildchat-dag: the {config.release} release", docs_url=None, redoc_url=None
    )
    app.state.browser = browser

    def page(request: Request, template: str, status_code: int = 200, **values: Any):
        values.setdefault("banner", None)
        return templates.TemplateResponse(
            request,
            template,
            {
                "release": config.release,
                "review_enabled": browser.warehouse is not None,
                "facet_labels": FACET_LABELS,
                **values,
            },
            status_code=status_code,
        )

    def failure(request: Request, status: int, title: str, message: str):
        return page(
            request, "error.html", status_code=status, title=title, message=sanitize_text(message)
        )

    def guarded(handler):
        """A failure is a page that says what went wrong, in sanitized words; never a trace."""

        @functools.wraps(handler)
        def wrapper(request: Request, *args, **kwargs):
            try:
                return handler(request, *args, **kwargs)
            except BadRequest as error:
                return failure(request, 400, "Bad request", str(error))
            except (ReleaseNotFound, NotInWarehouse) as error:
                return failure(request, 404, "Not found", str(error))
            except Exception as error:
                return failure(request, 500, "Error", f"{type(error).__name__}: {error}")

        return wrapper

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/", response_class=HTMLResponse)
    @guarded
    def search(request: Request):
        params = request.query_params
        text = params.get("q", "")
        number = _page_number(params.get("page"))
        filters = {name: params.getlist(name) for name in FACETS if params.getlist(name)}
        unknown = sorted(set(params) - {"q", "page", *FACETS})
        if unknown:
            raise BadRequest(f"unknown parameter(s): {', '.join(unknown)}")
        index = browser.index()
        try:
            result = index.search(text, filters, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE)
        except ValueError as error:  # an unknown facet or value: the request's fault
            raise BadRequest(str(error)) from None
        pages = max(1, math.ceil(result.total / PAGE_SIZE))

        def link(**changes: Any) -> str:
            items: list[tuple[str, str]] = []
            values = {"q": text, **{k: list(v) for k, v in filters.items()}, "page": number}
            values.update(changes)
            for key, value in values.items():
                if key == "page" and value in (1, None):
                    continue
                if isinstance(value, list):
                    items.extend((key, v) for v in value)
                elif value not in ("", None):
                    items.append((key, str(value)))
            return "/?" + urlencode(items) if items else "/"

        def toggle(facet: str, value: str) -> str:
            chosen = list(filters.get(facet, []))
            chosen = [v for v in chosen if v != value] if value in chosen else [*chosen, value]
            return link(**{facet: chosen, "page": 1})

        return page(
            request,
            "search.html",
            q=text,
            result=result,
            filters=filters,
            number=number,
            pages=min(pages, MAX_PAGE),
            link=link,
            clear_link=link(page=1, **{facet: [] for facet in filters}),
            toggle=toggle,
            highlight=_highlighter(text),
            max_query_chars=MAX_QUERY_CHARS,
            banner=browser.staleness(),
            documents=index.num_docs,
        )

    @app.get("/conversation/{conversation_hash}", response_class=HTMLResponse)
    @guarded
    def conversation(request: Request, conversation_hash: str):
        copy = _page_number(request.query_params.get("copy"))
        hits = browser.index().locate(conversation_hash)
        if not hits:
            raise ReleaseNotFound(f"no conversation {conversation_hash[:64]} in the index")
        if copy > len(hits):
            raise ReleaseNotFound(f"conversation {conversation_hash[:64]} has {len(hits)} copies")
        hit = hits[copy - 1]
        record = read_conversation(browser.shards(), hit.shard, hit.row)
        if record.get("conversation_hash") != conversation_hash:
            return failure(
                request,
                409,
                "The release changed",
                "The release was cut again after its index was built, and this conversation "
                f"moved. Materialize {config.release}_search_index, then search again.",
            )
        return page(
            request,
            "conversation.html",
            view=conversation_view(record),
            hit=hit,
            copies=len(hits),
            copy=copy,
            banner=browser.staleness(),
        )

    @app.get("/review/{day}/{conversation_id}", response_class=HTMLResponse)
    @guarded
    def review(request: Request, day: str, conversation_id: str):
        if browser.warehouse is None:
            raise BadRequest("the redaction review needs the warehouse (--warehouse)")
        try:
            when = date.fromisoformat(day)
            number = int(conversation_id)
        except ValueError:
            raise BadRequest("a review is /review/YYYY-MM-DD/<conversation id>") from None
        rules = browser.rules(browser.current_rules_name())
        store = FrequencyStore(browser.warehouse.connect)
        reviewed = review_conversation(
            browser.warehouse.query,
            when,
            number,
            rules,
            frequencies_of=store.frequencies_of,
            client_ips_among=lambda addresses: client_ips_among(browser.warehouse.query, addresses),
        )
        rows = reviewed.rows.to_dicts()
        by_utterance: dict[int, list[dict]] = {}
        for row in rows:
            by_utterance.setdefault(row["utterance_index"], []).append(row)
        utterances = [
            {
                "index": index,
                "role": role,
                "segments": segments(text) if text is not None else [],
                "candidates": by_utterance.get(index, []),
            }
            for index, role, text in reviewed.anonymized.iter_rows()
        ]
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["decision"]] = counts.get(row["decision"], 0) + 1
        return page(
            request,
            "review.html",
            day=day,
            conversation_id=number,
            utterances=utterances,
            counts=sorted(counts.items()),
            stale=any(r["status"] == "stale" for r in rows),
            rules_name=browser.current_rules_name(),
            rules_hash=rules.rules_hash[:16],
        )

    @app.get("/rules", response_class=HTMLResponse)
    @guarded
    def rules_page(request: Request):
        params = request.query_params
        versions = browser.rules_versions()
        names = [v["name"] for v in versions]
        a = params.get("a") or browser.current_rules_name()
        b = params.get("b") or (names[1] if len(names) > 1 else names[0])
        values: dict[str, Any] = {"versions": versions, "a": a, "b": b, "diff": None}
        if "a" in params or "b" in params:
            if browser.warehouse is None:
                raise BadRequest("the rules diff needs the warehouse (--warehouse)")
            number = _page_number(params.get("page"))
            diff = browser.diff(a, b)
            ids = diff.spans.select("partition_day", "conversation_id").unique(maintain_order=True)
            shown = ids.slice((number - 1) * DIFF_PAGE_CONVERSATIONS, DIFF_PAGE_CONVERSATIONS)
            spans = diff.spans.join(shown, on=["partition_day", "conversation_id"], how="semi")
            grouped: list[dict[str, Any]] = []
            for (day, conversation), group in spans.group_by(
                "partition_day", "conversation_id", maintain_order=True
            ):
                grouped.append(
                    {
                        "day": day.isoformat(),
                        "conversation_id": conversation,
                        "spans": group.to_dicts(),
                    }
                )
            values.update(
                diff=diff,
                conversations=grouped,
                number=number,
                pages=max(1, math.ceil(ids.height / DIFF_PAGE_CONVERSATIONS)),
                by_change=diff.spans.group_by("entity_type", "decision_a", "decision_b")
                .len()
                .sort("len", descending=True)
                .to_dicts(),
            )
        return page(request, "rules.html", **values)

    return app
