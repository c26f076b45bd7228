"""How well RSS/Atom items are dated: the labelled set in tests/fixtures/rss, read end to end.

    .venv/bin/python bench/rss_eval.py [--all]

Serves tests/fixtures/rss on 127.0.0.1, reads each feed as an RSS source would be read
(feed, linked pages, linked .ics, text), and compares start, end and status with
expected.json. Prints a line per item (only the wrong ones unless --all) and the totals:
the share exactly right, and the items dated to a wrong day (an item we cannot date is a
warning, never a wrong date).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from aggregator import worker
from aggregator.fetch import Fetcher, open_session
from aggregator.model import Limits, Network, Occurrence, Settings, Source, SourceKind
from aggregator.parse import read_source

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rss"
#: every fixture date lies within ten years of this
NOW = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    feed: str
    id: str
    expected: dict
    got: dict | None
    warnings: tuple[str, ...]

    @property
    def right(self) -> bool:
        if self.expected["start"] is None:
            return self.got is None
        return self.got is not None and all(
            self.got[k] == self.expected[k] for k in ("start", "end", "status")
        )

    @property
    def wrong_day(self) -> bool:
        if self.got is None:
            return False
        if self.expected["start"] is None:
            return True
        return self.got["start"][:10] != self.expected["start"][:10]


def as_expected(occurrence: Occurrence, zone: ZoneInfo) -> dict:
    """Our occurrence written the way expected.json writes events."""
    if occurrence.all_day:
        last = occurrence.end - timedelta(days=1)
        start, end = occurrence.start.isoformat(), None if last <= occurrence.start else last
        end = end.isoformat() if isinstance(end, date) else None
    else:
        local = occurrence.start.astimezone(zone)
        start = local.isoformat()
        end = None if occurrence.end == occurrence.start else occurrence.end.astimezone(zone)
        end = end.isoformat() if end else None
    return {
        "start": start,
        "end": end,
        "status": occurrence.status.value,
        "title": occurrence.title,
        "location": occurrence.location or None,
        "found_by": occurrence.origin,
    }


async def evaluate() -> list[Row]:
    async def serve(request: web.Request) -> web.StreamResponse:
        path = (FIXTURES / request.match_info["path"]).resolve()
        if not path.is_file() or FIXTURES not in path.parents:
            return web.Response(status=404, text="not found")
        body = path.read_text(encoding="utf-8").replace("{{BASE}}", base)
        kind = {".xml": "application/rss+xml", ".ics": "text/calendar"}.get(
            path.suffix, "text/html"
        )
        return web.Response(text=body, content_type=kind)

    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rows: list[Row] = []
    limits = replace(Limits(past_days=3650, future_days=3650, max_pages=200), retries=0)
    try:
        async with open_session(Network(name="eval"), limits) as session:
            fetcher = Fetcher(session, limits)
            for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
                expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
                zone = ZoneInfo(expected["timezone"])
                source = Source(
                    id=folder.name,
                    name=folder.name,
                    url=f"{base}/{folder.name}/feed.xml",
                    kind=SourceKind.RSS,
                    language=expected["language"],
                    timezone=expected["timezone"],
                )
                settings = Settings(network=Network(name="eval"), sources=(source,), limits=limits)
                result = await fetcher.fetch(source.url)
                read = await read_source(
                    result,
                    source,
                    settings,
                    NOW,
                    fetch_page=partial(fetcher.fetch, content=True, trusted_host=source.url),
                    parse=worker.parse,
                )
                parsed = read.feed
                got = {o.uid: as_expected(o, zone) for o in parsed.occurrences}
                seen = set()
                for item in expected["items"]:
                    item_id = item["id"].replace("{{BASE}}", base)
                    duplicate = item_id in seen
                    seen.add(item_id)
                    if duplicate:
                        continue  # a feed that repeats an item: one event, checked once
                    rows.append(Row(folder.name, item_id, item, got.get(item_id), parsed.warnings))
    finally:
        await runner.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--all", action="store_true", help="print every item, not only the wrong")
    args = parser.parse_args()
    rows = asyncio.run(evaluate())
    print(
        f"{'feed':<16}{'ok':<4}{'expected start':<27}{'got start':<27}{'exp end':<27}"
        f"{'got end':<27}{'exp/got status':<26}title / how"
    )
    for row in rows:
        if row.right and not args.all:
            continue
        got = row.got or {"start": None, "end": None, "status": "-", "found_by": "skipped"}
        exp = row.expected
        print(
            f"{row.feed:<16}{'ok' if row.right else 'NO':<4}"
            f"{exp['start']!s:<27}{got['start']!s:<27}"
            f"{exp['end']!s:<27}{got['end']!s:<27}{exp['status'] + '/' + got['status']:<26}"
            f"{exp['title'][:40]} / {got['found_by']}"
        )
    right = sum(r.right for r in rows)
    wrong_days = sum(r.wrong_day for r in rows)
    print(
        f"\n{len(rows)} items: {right} exactly right ({right / len(rows):.1%}); "
        f"{wrong_days} dated to a wrong day; "
        f"{sum(r.expected['start'] is None for r in rows)} without a date expected"
    )


if __name__ == "__main__":
    main()
