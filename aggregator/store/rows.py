"""Rows of the sources' tables <-> typed records: a source's state, its fetch history, the
pages its items link, a change, and problems as JSON. No record leaves the store as a dict."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict

from aggregator.model import (
    CachedPage,
    ChangeKind,
    ChangeRecord,
    FetchOutcome,
    FetchRecord,
    FoundEvent,
    PageData,
    Problem,
    SourceState,
    Status,
    Validators,
)
from aggregator.normalise import from_iso, iso
from aggregator.problems import as_problem, problem
from aggregator.store.packing import unpack_text

#: a source's stored warnings, at most
MAX_WARNINGS = 200


def problem_json(item: Problem | str | None) -> dict | None:
    """A problem as stored: {"code", "words", "detail"}."""
    if item is None:
        return None
    found = as_problem(item)
    return {"code": found.code, "words": found.words, "detail": dict(found.detail)}


def problem_of(value: dict | str | None, words: str | None = None) -> Problem | None:
    """A stored problem; plain words (rows made before problems had codes) as "text"."""
    if isinstance(value, dict):
        detail = tuple((str(k), str(v)) for k, v in (value.get("detail") or {}).items())
        return Problem(value["code"], value["words"], detail)
    if isinstance(value, str):
        return Problem.text(value)
    return Problem.text(words) if words else None


def words_of(item: Problem | str | None) -> str | None:
    """The English words of a problem, for the text columns."""
    return None if item is None else str(item)


def first_by_words(problems: Iterable[Problem]) -> list[Problem]:
    """Each problem once by its words: the first of those with the same words, in order."""
    unique: dict[str, Problem] = {}
    for item in problems:
        unique.setdefault(item.words, item)
    return list(unique.values())


def capped(warnings: Iterable[Problem | str]) -> list[dict]:
    """Each warning once (by its words), at most MAX_WARNINGS, and how many more there
    were, as stored: one feed cannot flood its page with warnings."""
    unique = first_by_words(map(as_problem, warnings))
    if len(unique) > MAX_WARNINGS:
        more = len(unique) - MAX_WARNINGS
        unique = [*unique[:MAX_WARNINGS], problem("more-warnings", count=more)]
    return [problem_json(w) for w in unique]


def change_record(row) -> ChangeRecord:
    """A change as written, of a row with its summaries' texts (before_body, after_body)."""
    return ChangeRecord(
        event_id=row.event_id,
        at=row.at,
        kind=ChangeKind(row.kind),
        title=row.title,
        before=_summary(row.before, row.before_text, row.before_body),
        after=_summary(row.after, row.after_text, row.after_body),
        id=row.id,
    )


def _summary(summary: dict | None, text_id: int | None, body: bytes | None) -> dict | None:
    """A summary with its description back from texts, where it was (the key stays in its
    place: the history's JSON shows the summary as it was made)."""
    if summary is None or text_id is None:
        return summary
    return {**summary, "description": unpack_text(body)}


def fetch_record(row) -> FetchRecord:
    return FetchRecord(
        source_id=row.source_id,
        at=row.at,
        outcome=FetchOutcome(row.outcome),
        status=row.status,
        duration=row.duration,
        bytes=row.bytes,
        error=row.error,
        message=row.message,
        occurrences=row.occurrences,
        id=row.id,
        problem=problem_of(row.problem, row.message),
    )


def source_state(row) -> SourceState:
    return SourceState(
        id=row.id,
        url=row.url,
        validators=Validators(etag=row.etag, last_modified=row.last_modified),
        content_hash=row.content_hash,
        last_fetch_at=row.last_fetch_at,
        last_success_at=row.last_success_at,
        last_error=row.last_error,
        failures_in_row=row.failures_in_row,
        next_check_at=row.next_check_at,
        occurrence_count=row.occurrence_count,
        warnings=tuple(problem_of(w) for w in row.warnings or ()),
        failing_since=row.failing_since,
        held_drop=row.held_drop,
        gone_at=row.gone_at,
        moved_to=row.moved_to,
        pending_removals=row.pending_removals,
        unstable_uids=row.unstable_uids,
        last_problem=problem_of(row.last_problem, row.last_error),
    )


def cached_page(row) -> CachedPage:
    return CachedPage(
        page=_page(row.data),
        item_fingerprint=row.item_fingerprint,
        fetched_at=row.fetched_at,
        validators=Validators(etag=row.etag, last_modified=row.last_modified),
    )


def page_row(source_id: str, cached: CachedPage) -> dict:
    return {
        "url": cached.page.url,
        "source_id": source_id,
        "item_fingerprint": cached.item_fingerprint,
        "fetched_at": cached.fetched_at,
        "etag": cached.validators.etag,
        "last_modified": cached.validators.last_modified,
        "data": _page_data(cached.page),
    }


def _page_data(page: PageData) -> dict:
    return {
        "url": page.url,
        "events": [
            {
                **asdict(e),
                "start": iso(e.start),
                "end": iso(e.end),
                "status": e.status.value if e.status else None,
            }
            for e in page.events
        ],
        "ics_links": list(page.ics_links),
        "text": page.text,
        "location": page.location,
    }


def _page(data: dict) -> PageData:
    events = tuple(
        FoundEvent(
            **{
                **e,
                "start": from_iso(e["start"]),
                "end": from_iso(e["end"]),
                "status": Status(e["status"]) if e["status"] else None,
            }
        )
        for e in data["events"]
    )
    return PageData(
        url=data["url"],
        events=events,
        ics_links=tuple(data["ics_links"]),
        text=data["text"],
        location=data["location"],
    )
