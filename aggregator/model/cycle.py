"""A source's cycle: its stored state, what it fetched, what it decided and recorded.

refresh.py: the store's SourceForUpdate -> fetch (Fetched) -> parse.read_source (SourceRead)
-> decide.py (SourceUpdate) -> Store.apply. One read of the store, one write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aggregator.model.feeds import CachedPage, FetchResult, Occurrence, Validators
from aggregator.model.kinds import ChangeKind, FetchOutcome, Problem
from aggregator.model.settings import Source


@dataclass(frozen=True)
class SourceState:
    """A source's fetch state and health, as the store keeps it."""

    id: str
    url: str
    validators: Validators = field(default_factory=Validators)
    content_hash: str | None = None
    last_fetch_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    failures_in_row: int = 0
    next_check_at: datetime | None = None
    occurrence_count: int = 0
    #: what the last read found (older rows' plain words come as "text" problems)
    warnings: tuple[Problem, ...] = ()
    #: when the current run of failures began
    failing_since: datetime | None = None
    #: a suspicious drop not applied yet, in words; the next fetch confirms or clears it
    held_drop: str | None = None
    #: when the server said 410 Gone; events stay until an operator acts
    gone_at: datetime | None = None
    #: the address every redirect pointed to permanently (301/308); fetched instead of `url`
    moved_to: str | None = None
    #: occurrences that left the feed, whose removal the next good fetch confirms
    pending_removals: int = 0
    #: its UIDs change on every fetch (seen with Office 365): identity from start and title
    unstable_uids: bool = False
    #: `last_error` with its code (older rows' words come as a "text" problem)
    last_problem: Problem | None = None

    @property
    def health(self) -> str:
        """'gone', 'drop held', 'failing', 'ok' or 'never fetched'."""
        if self.gone_at is not None:
            return "gone"
        if self.held_drop:
            return "drop held"
        if self.failures_in_row:
            return "failing"
        return "ok" if self.last_fetch_at is not None else "never fetched"

    def describe(self) -> str:
        """The state in words a member organisation can act on."""
        if self.gone_at is not None:
            return (
                f"gone since {self.gone_at:%Y-%m-%d %H:%M} UTC: the server answers 410 Gone; "
                "its last events are kept until an operator removes the source"
            )
        if self.held_drop:
            return f"drop held: {self.held_drop}"
        if self.failures_in_row:
            since = f"{self.failing_since:%Y-%m-%d %H:%M} UTC" if self.failing_since else "?"
            return (
                f"failing since {since} ({self.failures_in_row} in a row): "
                f"{self.last_error}; the last good events are kept"
            )
        if self.last_fetch_at is None:
            return "never fetched"
        text = "ok"
        if self.moved_to:
            text += f"; moved permanently to {self.moved_to}: update the address in sources.yaml"
        return text


@dataclass(frozen=True)
class Attempt:
    """One fetch of one source and what came of it, as the store records it."""

    at: datetime
    outcome: FetchOutcome
    #: what happened (plain words are kept as a "text" problem)
    message: Problem | str
    next_check_at: datetime
    status: int | None = None
    duration: float = 0.0
    bytes: int = 0
    error: Problem | str | None = None
    #: validators to keep for the next conditional GET; None keeps the stored ones
    validators: Validators | None = None
    moved_to: str | None = None
    #: the remembered permanent address failed: fetch the configured one again
    forget_move: bool = False
    gone: bool = False
    #: the source's UIDs were found to change on every fetch
    unstable_uids: bool = False
    #: for 'held': why the new snapshot was not applied
    held_drop: str | None = None


@dataclass(frozen=True)
class FetchRecord:
    """One recorded fetch attempt of a source (its page's history and timeline)."""

    source_id: str
    at: datetime
    outcome: FetchOutcome
    status: int | None = None
    duration: float = 0.0
    bytes: int = 0
    error: str | None = None
    message: str | None = None
    #: the source's occurrences after the attempt
    occurrences: int | None = None
    id: int = 0
    #: `message` with its code (older rows' words come as a "text" problem)
    problem: Problem | None = None


@dataclass(frozen=True)
class Change:
    """What happened to one occurrence between two good snapshots of a source."""

    kind: ChangeKind
    key: str
    title: str
    before: Occurrence | None = None
    after: Occurrence | None = None


@dataclass(frozen=True)
class SourceForUpdate:
    """What one source's cycle needs from the store before it fetches: its state. What a
    new body is read and measured with (the pages its items link, its stored occurrences)
    is read only when the fetch brings one: a cycle in which nothing changed reads no more."""

    state: SourceState


@dataclass(frozen=True)
class Fetched:
    """What fetching one source brought."""

    source: Source
    result: FetchResult
    #: the remembered permanent address went away, so the configured one was fetched
    forget_move: bool = False


@dataclass(frozen=True)
class SourceUpdate:
    """The intent of one source's cycle, decided before the store sees it (decide.py): what
    Store.apply records and replaces, in one transaction."""

    source_id: str
    #: the attempt: a row of the fetch history, and the source's health
    attempt: Attempt
    #: the source's new occurrences; None keeps the stored ones
    snapshot: tuple[Occurrence, ...] | None = None
    #: the hash of the body read, stored with `warnings` and a snapshot; None keeps both
    content_hash: str | None = None
    #: what the read found (None: nothing was read)
    warnings: tuple[Problem, ...] | None = None
    #: linked pages read in this cycle, kept for the next
    pages: tuple[CachedPage, ...] = ()
    #: the changes of the source's occurrences, counted by kind ("added": 3)
    changes: dict[str, int] = field(default_factory=dict)
