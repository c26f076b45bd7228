"""The page's text search (`/?q=`): over an event's title, place and organisers. Pure.

The store keeps each published event's `search_text` in a column, so a search reads only the
rows whose text holds every word (SQL LIKE); `matches` is the same rule on an event in hand.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from aggregator.model import MergedEvent

#: a search of more is cut: a query is a few words, not a document
MAX_QUERY = 200
#: words looked for at most
MAX_WORDS = 8


def fold(text: str) -> str:
    """Text as searched: NFKC, case folded, white space as single spaces."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def search_text(event: MergedEvent) -> str:
    """What a search looks in: the title, the place and every organiser, folded."""
    return searched(event.title, event.location, event.organisers)


def searched(title: str, location: str, organisers: Iterable[str]) -> str:
    """search_text of an event's fields (as the store keeps them)."""
    return fold("\n".join((title, location, *organisers)))


def query_words(q: str | None) -> tuple[str, ...]:
    """The words of a query, folded, each once, in order; none for a blank query."""
    words = dict.fromkeys(fold((q or "")[:MAX_QUERY]).split())
    return tuple(words)[:MAX_WORDS]


def matches(event: MergedEvent, words: tuple[str, ...]) -> bool:
    """Whether every word is in the event's title, place or organisers (no words: all are)."""
    if not words:
        return True
    text = search_text(event)
    return all(word in text for word in words)
