"""One feed read without storing anything: `aggregator check` and the /check page. The same
reading as a refresh (linked pages of RSS items included), with what was found, how, and what
was skipped."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from aggregator import worker
from aggregator.errors import ParseError
from aggregator.fetch import Fetcher
from aggregator.model import (
    FetchOutcome,
    FetchResult,
    Limits,
    Network,
    Occurrence,
    Problem,
    Settings,
    Source,
    SourceKind,
)
from aggregator.normalise import iso
from aggregator.parse import read_source


@dataclass(frozen=True)
class CheckReport:
    target: str
    occurrences: tuple[Occurrence, ...] = ()
    warnings: tuple[Problem, ...] = ()
    #: repeating series in an iCalendar feed
    series: int = 0
    #: why nothing could be read, in words
    error: str | None = None

    def as_json(self) -> dict:
        body = {
            "occurrences": [
                {
                    "uid": o.uid,
                    "recurrence_id": o.recurrence_id,
                    "title": o.title,
                    "start": iso(o.start),
                    "end": iso(o.end),
                    "all_day": o.all_day,
                    "status": o.status.value,
                    "tzid": o.tzid,
                    "found_by": o.origin or "iCalendar",
                }
                for o in self.occurrences
            ],
            "warnings": [str(w) for w in self.warnings],
        }
        if self.error:
            body["error"] = self.error
        return body


async def check_feed(
    target: str,
    fetcher: Fetcher,
    network: Network,
    limits: Limits,
    now: datetime,
    kind: SourceKind = SourceKind.AUTO,
) -> CheckReport:
    """Fetch `target` (through `fetcher`, with its limits and checks) and read it."""
    result = await fetcher.fetch(target)
    if result.outcome is not FetchOutcome.OK:
        return CheckReport(target, error=f"could not fetch the feed: {result.error}")
    return await read_body(result, target, fetcher, network, limits, now, kind)


async def read_body(
    result: FetchResult,
    target: str,
    fetcher: Fetcher,
    network: Network,
    limits: Limits,
    now: datetime,
    kind: SourceKind = SourceKind.AUTO,
) -> CheckReport:
    """Read a fetched (or uploaded) feed body."""
    source = Source(id="check", name="check", url=target, kind=kind)
    settings = Settings(network=network, sources=(source,), limits=limits)
    try:
        # member content, or a stranger's: read in a worker process on a budget, its
        # linked pages through the fetcher's guard; nothing is kept
        read = await read_source(
            result,
            source,
            settings,
            now,
            fetch_page=partial(fetcher.fetch, content=True, trusted_host=source.url),
            parse=worker.parse_check,
        )
    except ParseError as e:
        return CheckReport(target, error=f"could not read the feed: {e.message}")
    parsed = read.feed
    occurrences = tuple(sorted(parsed.occurrences, key=lambda o: (iso(o.start), o.key)))
    return CheckReport(target, occurrences, tuple(parsed.warnings), parsed.series)


def uploaded(body: bytes, name: str) -> FetchResult:
    """An uploaded file as if it had been fetched."""
    return replace(FetchResult(FetchOutcome.OK, name), body=body, final_url=name)
