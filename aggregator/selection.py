"""Filtered outputs: `?source=a,b&category=x&status=cancelled` on the calendar, the Atom feed,
the JSON and the page. Pure: a selection read from a query, and whether an event is in it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from multidict import MultiMapping

from aggregator.model import MergedEvent, Status

#: the query parameters a selection is read from
PARAMETERS = ("source", "category", "status")
#: the parameters the page's filter form sends
FILTER_KEYS = ("source", "category")
#: a value (a category's name) of at most this many characters, and at most this many values
#: of a parameter: a selection is a cache key, a link and a header, none of them huge
MAX_VALUE = 100
MAX_VALUES = 50


class TooLong(ValueError):
    """A filter's value, or its number of values, beyond what any selection needs."""


class UnknownChoice(ValueError):
    """A filter names a source or a status that does not exist: which parameter, the values
    it does not know, and the values it would take (for a message in the reader's language)."""

    def __init__(self, parameter: str, values: Iterable[str], choices: Iterable[str]) -> None:
        self.parameter = parameter
        self.values = tuple(values)
        self.choices = tuple(choices)
        super().__init__(
            f"{parameter}={','.join(self.values)}: "
            + ("no such source; " if parameter == "source" else "")
            + f"use one of {', '.join(self.choices)}"
        )


@dataclass(frozen=True)
class Selection:
    """Which events a filtered output shows: each part left empty admits everything."""

    sources: frozenset[str] = frozenset()
    #: casefolded
    categories: frozenset[str] = frozenset()
    statuses: frozenset[Status] = frozenset()

    @classmethod
    def from_query(cls, query: MultiMapping[str], sources: Iterable[str]) -> Selection:
        """Read ?source=, ?category= and ?status= (repeated, or comma-separated).

        Raises UnknownChoice (a ValueError), with a message naming the parameter, for a source
        that is not configured or a status that does not exist: a typo must not look like an
        empty calendar."""
        known = set(sources)
        chosen = {name: _values(query, name) for name in PARAMETERS}
        for name, values in chosen.items():
            if len(values) > MAX_VALUES:
                raise TooLong(f"{name}=: at most {MAX_VALUES} values")
            long = next((v for v in sorted(values) if len(v) > MAX_VALUE), None)
            if long is not None:
                raise TooLong(f"{name}={long[:40]!r}…: at most {MAX_VALUE} characters a value")
        unknown = sorted(chosen["source"] - known)
        if unknown:
            raise UnknownChoice("source", unknown, sorted(known))
        statuses = set()
        for value in sorted(chosen["status"]):
            try:
                statuses.add(Status(value.lower()))
            except ValueError:
                raise UnknownChoice("status", [value], [s.value for s in Status]) from None
        return cls(
            sources=frozenset(chosen["source"]),
            categories=frozenset(c.casefold() for c in chosen["category"]),
            statuses=frozenset(statuses),
        )

    def __bool__(self) -> bool:
        return bool(self.sources or self.categories or self.statuses)

    def query(self) -> str:
        """The canonical query string: the same selection, the same string (and cache entry).

        Each value is percent-encoded, so a value holding ',' '&' or '=' cannot spell another
        selection's string (and be served that selection's kept body)."""
        return "&".join(
            f"{name}={','.join(quote(v, safe='') for v in values)}"
            for name, values in self.parameters().items()
            if values
        )

    def parameters(self) -> dict[str, tuple[str, ...]]:
        """Each parameter's values, sorted (categories casefolded): for links that keep it."""
        return {
            "source": tuple(sorted(self.sources)),
            "category": tuple(sorted(self.categories)),
            "status": tuple(sorted(s.value for s in self.statuses)),
        }

    def admits(self, event: MergedEvent) -> bool:
        if self.sources and self.sources.isdisjoint(event.source_ids):
            return False
        if self.categories and self.categories.isdisjoint(c.casefold() for c in event.categories):
            return False
        return not self.statuses or event.status in self.statuses


def _values(query: MultiMapping[str], name: str) -> set[str]:
    return {v.strip() for raw in query.getall(name, ()) for v in raw.split(",") if v.strip()}


def page_filters(
    query: Iterable[tuple[str, str]] | Mapping[str, Sequence[str]] | None,
) -> dict[str, tuple[str, ...]]:
    """The page's filters from query pairs (aiohttp: `request.query.items()`) or a mapping:
    only 'source' and 'category', each value once, sorted, empty ones ("all") dropped.
    The same filter always gives the same dict, so it can key a cache."""
    pairs: Iterable[tuple[str, str]]
    if query is None:
        pairs = ()
    elif isinstance(query, Mapping):
        pairs = [
            (key, value)
            for key, values in query.items()
            for value in ([values] if isinstance(values, str) else values)
        ]
    else:
        pairs = query
    chosen: dict[str, set[str]] = {key: set() for key in FILTER_KEYS}
    for key, value in pairs:
        if key in chosen and value.strip():
            chosen[key].add(value.strip())
    return {key: tuple(sorted(values)) for key, values in chosen.items()}
