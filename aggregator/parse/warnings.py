"""Warnings of one read: each once, in the order found, capped so that one bad feed cannot
flood its page."""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_WARNINGS = 200
_MORE = re.compile(r"\.\.\. and (\d+) more warnings")


class Warnings:
    """Warnings in the order found, each once, capped so one bad feed cannot flood a page;
    `dropped` counts what was cut, and the last line says how many."""

    def __init__(self, messages: Iterable[str] = ()) -> None:
        self.items: dict[str, None] = {}
        self.dropped = 0
        self.extend(messages)

    def add(self, message: str) -> None:
        if message in self.items:
            return
        if len(self.items) >= MAX_WARNINGS:
            self.dropped += 1
            return
        self.items[message] = None

    def extend(self, messages: Iterable[str]) -> None:
        """Add each message; the "... and N more" line of an earlier result counts N."""
        for message in messages:
            more = _MORE.fullmatch(message)
            if more:
                self.dropped += int(more.group(1))
            else:
                self.add(message)

    def result(self) -> tuple[str, ...]:
        extra = (f"... and {self.dropped} more warnings",) if self.dropped else ()
        return tuple(self.items) + extra


def capped(messages: Iterable[str]) -> tuple[str, ...]:
    """Warnings from several steps (feed, pages, items) as one capped list."""
    return Warnings(messages).result()
