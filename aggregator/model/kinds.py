"""What kinds of things there are: the enums every stage speaks, and a Problem."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SourceKind(enum.StrEnum):
    """What a source is read as: iCalendar, RSS/Atom, or told by its content (auto)."""

    ICAL = "ical"
    RSS = "rss"
    AUTO = "auto"


class Status(enum.StrEnum):
    """An occurrence's status, in RFC 5545 terms plus 'postponed' (cancelled, new date to come)."""

    SCHEDULED = "scheduled"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"
    POSTPONED = "postponed"
    #: scheduled, at a new date the organiser announced (schema.org EventRescheduled)
    RESCHEDULED = "rescheduled"


class FetchOutcome(enum.StrEnum):
    """How fetching a source went: a fetch gives OK, NOT_MODIFIED or FAILED; the attempt
    the cycle records gives UPDATED, UNCHANGED, NOT_MODIFIED, HELD or FAILED. The values
    are stored (fetches.outcome) and shown: never reworded."""

    #: the fetch brought a body
    OK = "ok"
    #: HTTP 304: the feed is as it was
    NOT_MODIFIED = "not modified"
    FAILED = "failed"
    #: read, and the source's occurrences changed
    UPDATED = "updated"
    #: read (or the same body as last time), nothing changed
    UNCHANGED = "unchanged"
    #: read, but a suspicious drop is held back until the next fetch shows the same
    HELD = "held"


class ChangeKind(enum.StrEnum):
    """What happened: to a member's occurrence (added, updated, removed), and to a network
    event as subscribers see it (all of them). Stored in the history and shown in Atom,
    JSON and the page: the values are never reworded."""

    ADDED = "added"
    #: other fields changed (a change record names them)
    UPDATED = "updated"
    CANCELLED = "cancelled"
    #: cancelled, a new date to come
    POSTPONED = "postponed"
    #: its start or end moved (the schema.org word is stored)
    MOVED = "rescheduled"
    #: cancelled or postponed before, going ahead again
    RESTORED = "restored"
    #: every member took it out of its feed
    REMOVED = "removed"


@dataclass(frozen=True)
class Problem:
    """Something a member should know or fix about its feed: a stable code, the words (in
    English), and the values the words were made of, so a page can say it in its own
    language and give the code's hint however the words are phrased."""

    #: stable, never reworded ("no-end", "windows-zone"); "text" for plain words
    code: str
    #: the words, in English
    words: str
    #: the values in the words, by name, in the order given
    detail: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return self.words

    @classmethod
    def text(cls, words: str) -> Problem:
        """Words without a code: what older versions stored."""
        return cls("text", words)
