"""Warnings of one read: each once, in the order found, capped so that one bad feed cannot
flood its page."""

from __future__ import annotations

from collections.abc import Iterable

from aggregator.problems import Problem, as_problem, more_count, problem

MAX_WARNINGS = 200


class Warnings:
    """Problems in the order found, each once (by its words), capped so one bad feed cannot
    flood a page; `dropped` counts what was cut, and the last one says how many. Plain words
    (from code that has no code for them yet) are kept as "text" problems."""

    def __init__(self, found: Iterable[Problem | str] = ()) -> None:
        #: words -> the problem first said in them
        self.items: dict[str, Problem] = {}
        self.dropped = 0
        self.extend(found)

    def add(self, found: Problem | str) -> None:
        """Keep `found` unless the same words were kept before or the list is full."""
        item = as_problem(found)
        if item.words in self.items:
            return
        if len(self.items) >= MAX_WARNINGS:
            self.dropped += 1
            return
        self.items[item.words] = item

    def extend(self, found: Iterable[Problem | str]) -> None:
        """Add each problem; the "... and N more" line of an earlier result counts N."""
        for item in found:
            more = more_count(item)
            if more is None:
                self.add(item)
            else:
                self.dropped += more

    def result(self) -> tuple[Problem, ...]:
        """The problems kept, then "... and N more warnings" when some were cut."""
        extra = (problem("more-warnings", count=self.dropped),) if self.dropped else ()
        return (*self.items.values(), *extra)


def capped(found: Iterable[Problem | str]) -> tuple[Problem, ...]:
    """Warnings from several steps (feed, pages, items) as one capped list."""
    return Warnings(found).result()


def error_words(error: BaseException) -> str:
    """What an error says, for a warning: its words (or its type's name), cut at 160
    characters."""
    text = str(error).strip() or type(error).__name__
    return text if len(text) < 160 else text[:157] + "..."
