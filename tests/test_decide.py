"""decide.py: one source's cycle as a table, (state, fetched, stored, parsed, now) -> the
intent. No database, no server, no clock: every input is a value."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.decide import (
    content_hash,
    decide,
    failed_unexpectedly,
    fetch_plan,
    is_due,
    moved_away,
    must_read,
    next_check,
)
from aggregator.errors import ParseError
from aggregator.model import (
    Fetched,
    FetchOutcome,
    FetchResult,
    Limits,
    Network,
    Occurrence,
    ParsedFeed,
    Problem,
    Settings,
    Source,
    SourceKind,
    SourceRead,
    SourceState,
    Status,
    Validators,
)
from aggregator.normalise import occurrence_fingerprint, occurrence_key
from aggregator.problems import TEMPLATES, say
from aggregator.reconcile import suspicious_drop

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
SOURCE = Source("m", "Member", "https://member.example/cal.ics", kind=SourceKind.ICAL)
SETTINGS = Settings(network=Network(name="Net"), sources=(SOURCE,), limits=Limits())
INTERVAL = timedelta(minutes=30)
DAY = timedelta(hours=24)  # Limits.max_backoff
BODY = b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
HASH = content_hash(BODY, NOW, SOURCE, SETTINGS)
ETAG = Validators(etag='"new"')


def occ(uid: str, day: int, title: str | None = None, **changes) -> Occurrence:
    """An occurrence of the source, `day` days from NOW."""
    start = NOW + timedelta(days=day)
    draft = Occurrence(
        key=occurrence_key("m", uid, None),
        source_id="m",
        uid=uid,
        recurrence_id=None,
        title=title or f"Event {uid}",
        start=start,
        end=start + timedelta(hours=2),
        all_day=False,
        **changes,
    )
    return replace(draft, fingerprint=occurrence_fingerprint(draft))


#: four upcoming occurrences, as stored after a good read
FOUR = tuple(occ(f"u{n}", n + 1) for n in range(4))
#: the same four as the feed lists them after renaming every UID (Office 365)
RENAMED = tuple(occ(f"new-u{n}", n + 1, title=f"Event u{n}") for n in range(4))
#: the second of them left the feed once: its removal waits for the next good fetch
MISSING = (FOUR[0], replace(FOUR[1], missing_since=NOW - INTERVAL), *FOUR[2:])
#: three of four gone at once: a suspicious drop
DROP = suspicious_drop(FOUR, FOUR[:1], NOW, Limits().drop_threshold).words


def state(**changes) -> SourceState:
    return SourceState(id="m", url=SOURCE.url, **changes)


def fetched(outcome=FetchOutcome.OK, body=BODY, forget_move=False, **result) -> Fetched:
    result.setdefault("status", 200)
    got = FetchResult(outcome, SOURCE.url, body=body, validators=ETAG, **result)
    return Fetched(SOURCE, got, forget_move)


def failed(**result) -> Fetched:
    return fetched(FetchOutcome.FAILED, b"", error="HTTP 500", **result)


def read(*occurrences: Occurrence, warnings=()) -> SourceRead:
    return SourceRead(ParsedFeed(tuple(occurrences), tuple(warnings)))


@dataclass(frozen=True)
class Case:
    state: SourceState
    fetched: Fetched
    stored: tuple[Occurrence, ...] = ()
    parsed: SourceRead | ParseError | None = None
    #: what the intent must say
    outcome: FetchOutcome = FetchOutcome.UPDATED
    wait: timedelta = INTERVAL
    message: str = ""
    #: "kept" (None) or "replaced" (a new snapshot)
    snapshot: str = "kept"
    changes: dict = field(default_factory=dict)
    held_drop: str | None = None
    #: validators to keep (None keeps the stored ones)
    validators: Validators | None = ETAG
    extra: dict = field(default_factory=dict)


CASES = {
    "a failed fetch": Case(
        state(),
        failed(),
        FOUR,
        outcome=FetchOutcome.FAILED,
        message="HTTP 500",
        validators=None,
    ),
    "a third failure in a row waits four intervals": Case(
        state(failures_in_row=2),
        failed(),
        FOUR,
        outcome=FetchOutcome.FAILED,
        wait=4 * INTERVAL,
        message="HTTP 500",
        validators=None,
    ),
    "backoff is capped": Case(
        state(failures_in_row=20),
        failed(),
        outcome=FetchOutcome.FAILED,
        wait=DAY,
        message="HTTP 500",
        validators=None,
    ),
    "Retry-After is honoured": Case(
        state(),
        failed(retry_after=7200.0),
        outcome=FetchOutcome.FAILED,
        wait=timedelta(hours=2),
        message="HTTP 500",
        validators=None,
    ),
    "Retry-After is capped": Case(
        state(),
        failed(retry_after=10 * 365 * 86400.0),
        outcome=FetchOutcome.FAILED,
        wait=DAY,
        message="HTTP 500",
        validators=None,
    ),
    "410 Gone is asked again rarely": Case(
        state(),
        failed(gone=True),
        FOUR,
        outcome=FetchOutcome.FAILED,
        wait=DAY,
        message="HTTP 500",
        validators=None,
        extra={"gone": True},
    ),
    "a fetch without words": Case(
        state(),
        fetched(FetchOutcome.FAILED, b""),
        outcome=FetchOutcome.FAILED,
        message="the fetch failed",
        validators=None,
    ),
    "a body that is no feed": Case(
        state(),
        fetched(),
        FOUR,
        ParseError(SOURCE.url, "the feed is empty"),
        outcome=FetchOutcome.FAILED,
        message="could not read the feed: the feed is empty",
        validators=None,
    ),
    "304": Case(
        state(content_hash=HASH),
        fetched(FetchOutcome.NOT_MODIFIED, b"", status=304),
        FOUR,
        outcome=FetchOutcome.NOT_MODIFIED,
        message="not modified (HTTP 304)",
    ),
    "the same body": Case(
        state(content_hash=HASH),
        fetched(),
        FOUR,
        outcome=FetchOutcome.UNCHANGED,
        message="the same feed as last time; not read again",
    ),
    "the same body confirms the pending removals": Case(
        state(content_hash=HASH, pending_removals=1),
        fetched(),
        MISSING,
        outcome=FetchOutcome.UPDATED,
        message="the same feed as last time; not read again; 1 vanished events confirmed removed",
        snapshot="replaced",
        changes={"removed": 1},
    ),
    "304 confirms the pending removals": Case(
        state(content_hash=HASH, pending_removals=1),
        fetched(FetchOutcome.NOT_MODIFIED, b""),
        MISSING,
        outcome=FetchOutcome.UPDATED,
        message="not modified (HTTP 304); 1 vanished events confirmed removed",
        snapshot="replaced",
        changes={"removed": 1},
    ),
    "a new body with new events": Case(
        state(),
        fetched(),
        (),
        read(*FOUR),
        outcome=FetchOutcome.UPDATED,
        message="read 4 occurrences (4 added)",
        snapshot="replaced",
        changes={"added": 4},
    ),
    "a new body with the same events": Case(
        state(content_hash="2026-11-24:old"),
        fetched(),
        FOUR,
        read(*FOUR),
        outcome=FetchOutcome.UNCHANGED,
        message="read 4 occurrences",
        snapshot="replaced",
    ),
    "a suspicious drop is held": Case(
        state(),
        fetched(),
        FOUR,
        read(FOUR[0]),
        outcome=FetchOutcome.HELD,
        message=DROP,
        held_drop=DROP,
        validators=None,
    ),
    "the same drop seen again is applied": Case(
        state(held_drop=DROP),
        fetched(),
        FOUR,
        read(FOUR[0]),
        outcome=FetchOutcome.UPDATED,
        message="read 1 occurrences (3 updated); the drop held back last time is confirmed "
        "and applied",
        snapshot="replaced",
        changes={"updated": 3},
    ),
    "a different drop is held again": Case(
        state(held_drop=DROP),
        fetched(),
        FOUR,
        read(FOUR[1]),
        outcome=FetchOutcome.HELD,
        message=suspicious_drop(FOUR, FOUR[1:2], NOW, 0.5).words,
        held_drop=suspicious_drop(FOUR, FOUR[1:2], NOW, 0.5).words,
        validators=None,
    ),
    "a permanent redirect is remembered": Case(
        state(content_hash=HASH),
        fetched(moved_to="https://member.example/new.ics"),
        outcome=FetchOutcome.UNCHANGED,
        message="the same feed as last time; not read again",
        extra={"moved_to": "https://member.example/new.ics"},
    ),
    "a moved address that went away is forgotten": Case(
        state(content_hash=HASH, moved_to="https://member.example/new.ics"),
        fetched(forget_move=True),
        outcome=FetchOutcome.UNCHANGED,
        message="the same feed as last time; not read again",
        extra={"forget_move": True},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_cycle_comes_to_its_intent(case: Case):
    update = decide(case.state, case.fetched, case.stored, case.parsed, NOW, SETTINGS)
    attempt = update.attempt
    assert update.source_id == "m"
    assert attempt.outcome is case.outcome
    assert attempt.at == NOW and attempt.next_check_at == NOW + case.wait
    assert str(attempt.message) == case.message
    assert (update.snapshot is not None) == (case.snapshot == "replaced")
    assert update.changes == case.changes
    assert attempt.held_drop == case.held_drop
    assert attempt.validators == case.validators
    for name, value in case.extra.items():
        assert getattr(attempt, name) == value, name
    if case.outcome is FetchOutcome.FAILED:
        assert attempt.error == attempt.message and update.warnings is None
    # the hash (and the warnings with it) are kept only from a read that was applied
    applied = case.parsed is not None and update.snapshot is not None
    assert (update.content_hash == HASH) if applied else update.content_hash is None


def test_a_confirmed_removal_is_cancelled_in_the_new_snapshot():
    update = decide(
        state(content_hash=HASH, pending_removals=1), fetched(), MISSING, None, NOW, SETTINGS
    )
    removed = [o for o in update.snapshot if o.removed_at is not None]
    assert [o.uid for o in removed] == ["u1"] and removed[0].removed_at == NOW
    assert removed[0].status is Status.CANCELLED


def test_a_dropped_event_is_cancelled_once_the_drop_is_confirmed():
    update = decide(state(held_drop=DROP), fetched(), FOUR, read(FOUR[0]), NOW, SETTINGS)
    assert {o.uid for o in update.snapshot if o.removed_at == NOW} == {"u1", "u2", "u3"}


def test_uids_that_change_on_every_fetch_are_replaced_by_start_and_title():
    update = decide(state(), fetched(), FOUR, read(*RENAMED), NOW, SETTINGS)
    assert update.attempt.unstable_uids
    assert update.warnings[0].code == "unstable-uids"
    listed = [o for o in update.snapshot if o.missing_since is None]
    assert len(listed) == 4 and all(o.uid.startswith("start-title-") for o in listed)
    # the next fetch renames them all again: nothing changes
    again = replace(RENAMED[0], uid="newer", key=occurrence_key("m", "newer", None))
    known = state(unstable_uids=True)
    later = decide(known, fetched(), update.snapshot, read(again, *RENAMED[1:]), NOW, SETTINGS)
    assert later.attempt.outcome is FetchOutcome.UNCHANGED


def test_the_warnings_of_a_read_are_problems_and_come_with_the_hash():
    no_end = Problem("no-end", "event 'X' has no end time; shown as ending when it starts")
    update = decide(
        state(), fetched(), (), read(*FOUR, warnings=[no_end, "plain words"]), NOW, SETTINGS
    )
    assert update.warnings == (no_end, Problem.text("plain words"))
    assert update.content_hash == HASH


def test_a_read_message_is_a_problem_with_its_detail():
    update = decide(state(), fetched(), (), read(*FOUR), NOW, SETTINGS)
    assert update.attempt.message == Problem(
        "read-changes",
        "read 4 occurrences (4 added)",
        (("count", "4"), ("changes", "4 added")),
    )


def test_a_bug_is_a_failure_in_words_with_backoff():
    update = failed_unexpectedly(
        state(failures_in_row=1), SOURCE, RuntimeError("boom"), NOW, SETTINGS
    )
    words = "an unexpected error in the aggregator (RuntimeError: boom); reported"
    assert update.attempt.outcome is FetchOutcome.FAILED
    assert str(update.attempt.error) == words and update.attempt.error.code == "bug"
    assert update.attempt.next_check_at == NOW + 2 * INTERVAL
    assert update.snapshot is None


# -- when, where and whether ------------------------------------------------------------------

HOUR = 3600.0


@pytest.mark.parametrize(
    "interval, failures, retry_after, max_backoff, wait",
    [
        (INTERVAL, 0, None, DAY, INTERVAL),
        (INTERVAL, 1, None, DAY, INTERVAL),
        (INTERVAL, 2, None, DAY, 2 * INTERVAL),
        (INTERVAL, 4, None, DAY, 8 * INTERVAL),
        (INTERVAL, 30, None, DAY, DAY),  # capped
        (INTERVAL, 4, None, timedelta(hours=1), timedelta(hours=1)),
        (INTERVAL, 0, 120.0, DAY, INTERVAL),  # a short Retry-After: the interval is longer
        (INTERVAL, 0, 2 * HOUR, DAY, timedelta(hours=2)),
        (INTERVAL, 0, 1e9, DAY, DAY),  # no server parks a source for years
        (timedelta(hours=48), 3, None, DAY, timedelta(hours=48)),  # the cap is never shorter
        (timedelta(minutes=15), 0, None, DAY, timedelta(minutes=15)),
    ],
)
def test_next_check(interval, failures, retry_after, max_backoff, wait):
    source = replace(SOURCE, refresh_interval=interval)
    limits = replace(Limits(), max_backoff=max_backoff.total_seconds())
    settings = replace(SETTINGS, limits=limits)
    assert next_check(source, settings, NOW, failures, retry_after) == NOW + wait


TODAY = content_hash(b"x", NOW, SOURCE, SETTINGS)
YESTERDAY = content_hash(b"x", NOW - DAY, SOURCE, SETTINGS)
MOVED = "https://member.example/new.ics"


@pytest.mark.parametrize(
    "stored, url, validators, moved",
    [
        (state(validators=ETAG, content_hash=TODAY), SOURCE.url, ETAG, False),
        # a new day moves the horizon: read in full
        (state(validators=ETAG, content_hash=YESTERDAY), SOURCE.url, Validators(), False),
        (state(validators=ETAG, content_hash=TODAY, moved_to=MOVED), MOVED, ETAG, True),
        # the operator gave a new address: what the old one said is forgotten
        (replace(state(validators=ETAG, content_hash=TODAY, moved_to=MOVED), url="/old"),)
        + (SOURCE.url, Validators(), False),
    ],
)
def test_fetch_plan(stored, url, validators, moved):
    assert tuple(fetch_plan(stored, SOURCE, NOW)) == (url, validators, moved)


@pytest.mark.parametrize(
    "status, away",
    [(404, True), (410, True), (400, True), (500, False), (200, False), (None, False)],
)
def test_a_moved_address_went_away_on_a_client_error(status, away):
    assert moved_away(FetchResult(FetchOutcome.FAILED, MOVED, status=status)) is away


@pytest.mark.parametrize(
    "next_check_at, due",
    [(None, True), (NOW - INTERVAL, True), (NOW, True), (NOW + timedelta(seconds=1), False)],
)
def test_is_due(next_check_at, due):
    assert is_due(state(next_check_at=next_check_at), NOW) is due


@pytest.mark.parametrize(
    "stored_hash, got, read",
    [
        (None, fetched(), True),
        (HASH, fetched(), False),
        (content_hash(BODY, NOW - DAY, SOURCE, SETTINGS), fetched(), True),  # a new day
        (HASH, fetched(body=BODY + b"\r\n"), True),
        (None, fetched(FetchOutcome.NOT_MODIFIED, b""), False),
        (None, failed(), False),
    ],
)
def test_must_read_only_a_new_body(stored_hash, got, read):
    assert must_read(state(content_hash=stored_hash), got, NOW, SETTINGS) is read


def test_a_new_body_is_decided_on_only_once_read():
    with pytest.raises(ValueError):
        decide(state(), fetched(), FOUR, None, NOW, SETTINGS)


def test_what_a_cycle_says_is_said_in_danish_too():
    update = decide(state(), fetched(body=b"new"), (), read(*FOUR), NOW, SETTINGS)
    message = update.attempt.message
    assert message.code == "read-changes" and message.code in TEMPLATES
    assert say(message, "en") == "read 4 occurrences (4 added)"
    assert say(message, "da") == "læste 4 forekomster (4 tilføjet)"


def test_a_failed_fetch_keeps_the_fetch_stage_s_problem():
    timeout = Problem("timeout", "no complete answer within 2 s (timed out)", (("seconds", "2"),))
    got = failed(problem=timeout)
    update = decide(
        state(),
        replace(got, result=replace(got.result, error=timeout.words)),
        (),
        None,
        NOW,
        SETTINGS,
    )
    assert update.attempt.message == update.attempt.error == timeout
