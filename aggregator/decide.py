"""A source's cycle, decided: what was fetched and read, against what was stored -> the intent.

    fetch_plan(state, source, now)          which address, with which validators
    body_hash(fetched, now, settings)       what the body read would be (once per cycle)
    must_read(state, fetched, now, settings, digest=)   a new body to read, or nothing new
    decide(state, fetched, stored, parsed, now, settings, digest=) -> SourceUpdate
    failed_unexpectedly(state, source, error, now, settings) -> SourceUpdate (a bug)

Pure, like reader's Decider: no I/O and no clock (`now` is given); refresh.py carries what
comes out to `Store.apply`, which writes it as it is. Rule 6 is decided here: a failed fetch
or read changes no stored occurrence, the source keeps its last good snapshot; a suspicious
drop (no events where there were upcoming ones, or most of them gone at once) is held back
until the next fetch confirms it; past events that leave a feed are kept, not removed. When
a source is fetched next (its interval, backoff, Retry-After, 410 Gone) is decided here and
nowhere else.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from aggregator.errors import ParseError
from aggregator.model import (
    Attempt,
    Change,
    Fetched,
    FetchOutcome,
    FetchResult,
    Limits,
    Occurrence,
    ParsedFeed,
    Problem,
    Settings,
    Source,
    SourceRead,
    SourceState,
    SourceUpdate,
    Validators,
)
from aggregator.problems import as_problem, changes_in_words, problem
from aggregator.reconcile import (
    carry_over,
    collapse_duplicates,
    confirm_removals,
    reconcile,
    stable_identities,
    suspicious_drop,
    uids_unstable,
)

#: a source that answered 410 Gone counts as this many failures: asked again rarely (the
#: longest backoff), in case the member brings it back
_GONE_FAILURES = 64


# -- when, where and whether to fetch and read ------------------------------------------------


class FetchPlan(NamedTuple):
    """Which address a cycle fetches, and how."""

    url: str
    validators: Validators
    #: `url` is the remembered permanent address: the member's server named it, so it is
    #: content and goes through the guard (unless it stays on the configured host)
    moved: bool


def fetch_plan(state: SourceState, source: Source, now: datetime) -> FetchPlan:
    """The address to fetch (a remembered permanent move, else the configured one) and the
    validators to send: only for what was read today, as a new day moves the horizon and the
    feed is then read in full. A new configured address forgets what the old one said."""
    same_url = state.url == source.url
    validators = state.validators if same_url and read_today(state, now) else Validators()
    moved = state.moved_to if same_url else None
    return FetchPlan(moved or source.url, validators, bool(moved))


def moved_away(result: FetchResult) -> bool:
    """Whether the remembered permanent address went away (4xx): the configured one is the
    member's word again."""
    return result.status is not None and 400 <= result.status < 500


def is_due(state: SourceState, now: datetime) -> bool:
    """Whether the source is to be fetched now: never fetched, or its next check has come
    (Store.due_sources asks the same of every source at once)."""
    return state.next_check_at is None or state.next_check_at <= now


def next_check(
    source: Source, settings: Settings, now: datetime, failures: int, retry_after: float | None
) -> datetime:
    """When to fetch again: the interval, doubled per failure in a row (capped), and never
    sooner than the server's Retry-After."""
    interval = (source.refresh_interval or settings.network.refresh_interval).total_seconds()
    wait = min(interval * 2 ** max(failures - 1, 0), max(settings.limits.max_backoff, interval))
    if retry_after is not None:
        # honoured, but a server cannot park a source for years
        wait = max(wait, min(retry_after, settings.limits.max_backoff))
    return now + timedelta(seconds=wait)


def content_hash(body: bytes, now: datetime, source: Source, settings: Settings) -> str:
    """What decides the occurrences read from a body: the body, the settings that read it,
    and the day (the horizon moves daily, so every feed is read in full once a day)."""
    limits = settings.limits
    reading = "\x1f".join(
        str(v)
        for v in (
            source.kind,
            source.timezone,
            source.language,
            settings.network.timezone,
            limits.past_days,
            limits.future_days,
            limits.max_occurrences,
        )
    )
    digest = hashlib.sha256(body + reading.encode()).hexdigest()
    return f"{now.date().isoformat()}:{digest[:53]}"


def read_today(state: SourceState, now: datetime) -> bool:
    """Whether the stored content hash is of a body read today (its date prefix)."""
    return (state.content_hash or "").startswith(now.date().isoformat() + ":")


def body_hash(fetched: Fetched, now: datetime, settings: Settings) -> str | None:
    """The content hash of the body fetched (None: a failure or a 304 brought none).

    A cycle works it out once and hands it to must_read, needs_stored and decide as `digest`:
    each would hash the body again (a warm cycle of 1,000 feeds of 300 KB hashed 900 MB)."""
    result = fetched.result
    if result.outcome is not FetchOutcome.OK:
        return None
    return content_hash(result.body, now, fetched.source, settings)


def must_read(
    state: SourceState,
    fetched: Fetched,
    now: datetime,
    settings: Settings,
    *,
    digest: str | None = None,
) -> bool:
    """Whether the fetch brought a body not read before (not a failure, not a 304, not the
    same body as last time today): only then is it parsed. `digest`: its body_hash."""
    if fetched.result.outcome is not FetchOutcome.OK:
        return False
    return (digest or body_hash(fetched, now, settings)) != state.content_hash


# -- the decision ---------------------------------------------------------------------------


def needs_stored(
    state: SourceState,
    fetched: Fetched,
    now: datetime,
    settings: Settings,
    *,
    digest: str | None = None,
) -> bool:
    """Whether deciding needs the stored occurrences: a new body is measured by them, and a
    304 or the same body confirms the removals waiting in them; a failure changes none."""
    if fetched.result.outcome is FetchOutcome.FAILED:
        return False
    return must_read(state, fetched, now, settings, digest=digest) or state.pending_removals > 0


def decide(
    state: SourceState,
    fetched: Fetched,
    stored: Sequence[Occurrence],
    parsed: SourceRead | ParseError | None,
    now: datetime,
    settings: Settings,
    *,
    digest: str | None = None,
) -> SourceUpdate:
    """What one cycle of a source comes to: its attempt and, after a good read, its new
    snapshot, from the stored state and occurrences, what was fetched, and what was read of
    it (`parsed`: None when nothing new was read, a ParseError when it could not be).
    `digest`: the body_hash of what was fetched, when the caller has it."""
    result = fetched.result
    if result.outcome is FetchOutcome.FAILED:
        return _failed(state, fetched, now, settings, _fetch_problem(result))
    if isinstance(parsed, ParseError):
        error = problem("unreadable", error=parsed.message)
        return _failed(state, fetched, now, settings, error)
    digest = digest or body_hash(fetched, now, settings)
    if not must_read(state, fetched, now, settings, digest=digest):
        return _not_read(state, fetched, stored, now, settings)
    if parsed is None:
        raise ValueError(f"{state.id}: a new body is decided on only once it is read")
    return _read(state, fetched, stored, parsed, now, settings, digest)


def _fetch_problem(result: FetchResult) -> Problem:
    """Why a fetch failed: its problem (with a code), else its words."""
    if result.problem is not None:
        return result.problem
    if result.error:
        return as_problem(result.error)
    return problem("fetch-failed-no-reason")


def failed_unexpectedly(
    state: SourceState, source: Source, error: Exception, now: datetime, settings: Settings
) -> SourceUpdate:
    """A bug met in the cycle, recorded as a failed attempt in words (it stops only this
    source; the next check backs off as after any failure)."""
    words = problem("bug", kind=type(error).__name__, error=error)
    attempt = Attempt(
        at=now,
        outcome=FetchOutcome.FAILED,
        message=words,
        error=words,
        next_check_at=next_check(source, settings, now, state.failures_in_row + 1, None),
    )
    return SourceUpdate(source.id, attempt)


def _attempt(
    state: SourceState,
    fetched: Fetched,
    now: datetime,
    settings: Settings,
    outcome: FetchOutcome,
    message: Problem,
    **kwargs,
) -> Attempt:
    result = fetched.result
    failures = state.failures_in_row + 1 if outcome is FetchOutcome.FAILED else 0
    if result.gone:
        failures = _GONE_FAILURES
    return Attempt(
        at=now,
        outcome=outcome,
        message=message,
        next_check_at=next_check(fetched.source, settings, now, failures, result.retry_after),
        status=result.status,
        duration=result.duration,
        bytes=len(result.body),
        moved_to=result.moved_to,
        forget_move=fetched.forget_move,
        gone=result.gone,
        **kwargs,
    )


def _failed(
    state: SourceState, fetched: Fetched, now: datetime, settings: Settings, error: Problem
) -> SourceUpdate:
    """Nothing read: the failure is recorded, every stored occurrence stays (rule 6)."""
    attempt = _attempt(state, fetched, now, settings, FetchOutcome.FAILED, error, error=error)
    return SourceUpdate(state.id, attempt)


def _not_read(
    state: SourceState,
    fetched: Fetched,
    stored: Sequence[Occurrence],
    now: datetime,
    settings: Settings,
) -> SourceUpdate:
    """A 304, or the same body as last time: nothing new to read."""
    result = fetched.result
    same = result.outcome is not FetchOutcome.NOT_MODIFIED
    outcome = FetchOutcome.UNCHANGED if same else FetchOutcome.NOT_MODIFIED
    code = "same-body" if same else "not-modified"
    if not state.pending_removals:
        message = problem(code)
        attempt = _attempt(
            state, fetched, now, settings, outcome, message, validators=result.validators
        )
        return SourceUpdate(state.id, attempt)
    # the same feed, fetched fine a second time: the vanished are confirmed gone
    removed = state.pending_removals
    message = problem(f"{code}-confirmed", removed=removed)
    attempt = _attempt(
        state, fetched, now, settings, FetchOutcome.UPDATED, message, validators=result.validators
    )
    snapshot = tuple(confirm_removals(stored, now))
    return SourceUpdate(state.id, attempt, snapshot, changes={"removed": removed})


def _read(
    state: SourceState,
    fetched: Fetched,
    stored: Sequence[Occurrence],
    parsed: SourceRead,
    now: datetime,
    settings: Settings,
    digest: str,
) -> SourceUpdate:
    """A new body, read: the new snapshot, or a suspicious drop held back."""
    reading = _read_against_stored(parsed.feed, stored, state, now, settings.limits)
    if reading.snapshot is None:  # a new drop, or a different one: hold it
        # not applied, validators and hash not kept: the next fetch reads it again
        message = reading.drop
        drop = message.words
        attempt = _attempt(
            state, fetched, now, settings, FetchOutcome.HELD, message, held_drop=drop
        )
        return SourceUpdate(state.id, attempt, warnings=reading.warnings, pages=parsed.pages)
    counts = dict(Counter(c.kind.value for c in reading.changes))
    outcome = FetchOutcome.UPDATED if reading.changes else FetchOutcome.UNCHANGED
    message = _read_message(len(reading.occurrences), counts, confirmed=bool(reading.drop))
    attempt = _attempt(
        state,
        fetched,
        now,
        settings,
        outcome,
        message,
        validators=fetched.result.validators,
        unstable_uids=reading.unstable,
    )
    return SourceUpdate(
        state.id,
        attempt,
        tuple(reading.snapshot),
        content_hash=digest,
        warnings=reading.warnings,
        pages=parsed.pages,
        changes=counts,
    )


def _read_message(count: int, changes: dict[str, int], *, confirmed: bool) -> Problem:
    """ "read 34 occurrences (34 added)", and whether a held drop was confirmed."""
    code = "read-changes" if changes else "read"
    if confirmed:
        code += "-drop-confirmed"
    if not changes:
        return problem(code, count=count)
    return problem(code, count=count, changes=changes_in_words(changes))


@dataclass(frozen=True)
class _Reading:
    """A good read, measured against the stored snapshot."""

    #: what was read, duplicates collapsed and identities made stable
    occurrences: tuple[Occurrence, ...]
    warnings: tuple[Problem, ...]
    #: the source's UIDs change on every fetch
    unstable: bool
    #: a suspicious drop
    drop: Problem | None
    #: the new snapshot; None while a new drop is held
    snapshot: list[Occurrence] | None
    changes: list[Change]


def _read_against_stored(
    feed: ParsedFeed,
    stored: Sequence[Occurrence],
    state: SourceState,
    now: datetime,
    limits: Limits,
) -> _Reading:
    """What a good read means against the stored snapshot: the read with its duplicates
    collapsed and identities made stable, whether UIDs are unstable, a suspicious drop, the
    new snapshot (None while a new drop is held) and the changes."""
    unique, duplicates = collapse_duplicates(feed.occurrences)
    occurrences = unique if duplicates else list(feed.occurrences)
    warnings = [as_problem(w) for w in (*feed.warnings, *duplicates)]
    unstable = state.unstable_uids or uids_unstable(stored, occurrences)
    if unstable:
        occurrences = stable_identities(occurrences, state.id)
        warnings.insert(0, problem("unstable-uids"))
    drop = suspicious_drop(stored, occurrences, now, limits.drop_threshold)
    if drop and drop.words != state.held_drop:
        return _Reading(tuple(occurrences), tuple(warnings), unstable, drop, None, [])
    snapshot = carry_over(
        stored,
        occurrences,
        now,
        oldest=now - timedelta(days=limits.past_days),
        retention=timedelta(days=limits.retention_days),
        recreate_window=timedelta(days=limits.recreate_window_days),
        confirmed=bool(drop),
    )
    changes = reconcile(stored, snapshot)
    return _Reading(tuple(occurrences), tuple(warnings), unstable, drop, snapshot, changes)
