"""Parsing speed: what a worker runs for an iCalendar feed against bare icalendar, per file.

    .venv/bin/python bench/parse_bench.py [--members 12] [--events 200] [--rounds 3]
                                          [--profile 30]

For each file, best of `rounds`, in CPU seconds of this one process:

- `from_ical`: bare `icalendar.Calendar.from_ical(body, multiple=True)`, the reference of
  issue 15's cold target;
- `+expand`: that and recurring-ical-events' expansion of the horizon, the least a reader
  must do;
- `ours`: parse_feed as a refresh's worker runs it (decode, parse_calendar with the limits
  and horizon of a refresh: normalised, keyed, fingerprinted, warnings collected).

File sets: members as bench/generate.py writes them (Google, Outlook, Nextcloud exports of
200 VEVENTs with TZIDs, series, long descriptions), the demo feeds, ../shared/corpus.
Prints each set's totals, the ratio ours/from_ical over the set and per file (median, worst).
`--profile N` adds where `ours` spends its time on the members (cProfile, N lines).

To compare with an earlier version, run it with that version first on the path:
`PYTHONPATH=/path/to/old/checkout .venv/bin/python bench/parse_bench.py`.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import recurring_ical_events

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT / "bench"))

from generate import calendar, member  # noqa: E402

from aggregator.model import FetchOutcome, FetchResult, Limits, Source, SourceKind  # noqa: E402
from aggregator.parse import parse_feed  # noqa: E402

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
LIMITS = Limits()
ZONE = "Europe/Copenhagen"


def file_sets(members: int, events: int) -> dict[str, list[bytes]]:
    corpus = sorted((ROOT.parent / "shared" / "corpus").rglob("*.ics"))
    generated = [
        calendar(1, member(n), events, max(members, 2), NOW.date()).encode()
        for n in range(1, members + 1)
    ]
    return {
        "members": generated,
        "demo feeds": [p.read_bytes() for p in sorted((ROOT / "examples" / "feeds").glob("*.ics"))],
        "shared corpus": [p.read_bytes() for p in corpus],
    }


def from_ical(body: bytes) -> int:
    try:
        return len(icalendar.Calendar.from_ical(body, multiple=True))
    except Exception:  # noqa: BLE001 - the baseline gives up on a broken file
        return 0


def expand(body: bytes) -> int:
    try:
        calendars = icalendar.Calendar.from_ical(body, multiple=True)
    except Exception:  # noqa: BLE001
        return 0
    start, stop = NOW - timedelta(days=LIMITS.past_days), NOW + timedelta(days=LIMITS.future_days)
    count = 0
    for one in calendars:
        try:
            for series in recurring_ical_events.of(one, skip_bad_series=True).series:
                count += sum(1 for _ in series.between(start, stop))
                if count >= LIMITS.max_occurrences:
                    return count
        except Exception:  # noqa: BLE001, S112 - e.g. an event without DTSTART
            continue
    return count


def ours(body: bytes) -> int:
    result = FetchResult(outcome=FetchOutcome.OK, url="bench.ics", body=body)
    source = Source(id="bench", name="Bench", url="bench.ics", kind=SourceKind.ICAL)
    try:
        parsed = parse_feed(result, source, network_zone=ZONE, now=NOW, limits=LIMITS)
    except Exception:  # noqa: BLE001 - ParseError: nothing read, like the baseline
        return 0
    return len(parsed.occurrences)


def per_file(function: Callable[[bytes], int], bodies: list[bytes], rounds: int) -> list[float]:
    """The best CPU time of each file over `rounds`."""
    best = [float("inf")] * len(bodies)
    for _ in range(rounds):
        for index, body in enumerate(bodies):
            started = time.process_time()
            function(body)
            best[index] = min(best[index], time.process_time() - started)
    return best


def report(name: str, bodies: list[bytes], rounds: int) -> None:
    bare, expanded, mine = (per_file(f, bodies, rounds) for f in (from_ical, expand, ours))
    occurrences = sum(map(ours, bodies))
    ratios = [m / b for m, b in zip(mine, bare, strict=True) if b > 0.002]
    spread = f"{statistics.median(ratios):5.2f} {max(ratios):5.2f}" if ratios else "    -     -"
    print(
        f"{name:<14}{len(bodies):>4}{sum(map(len, bodies)) / 1e6:>7.2f}{sum(bare):>10.3f}"
        f"{sum(expanded):>9.3f}{sum(mine):>8.3f}{occurrences:>8}{sum(mine) / sum(bare):>7.2f}"
        f"  {spread}"
    )


def profile(bodies: list[bytes], lines: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for body in bodies:
        ours(body)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=12)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=int, default=0)
    args = parser.parse_args()
    sets = file_sets(args.members, args.events)
    print(
        f"horizon {LIMITS.past_days} days back, {LIMITS.future_days} ahead; CPU seconds, "
        f"best of {args.rounds} per file; ratio = ours / from_ical"
    )
    print(
        f"{'files':<14}{'n':>4}{'MB':>7}{'from_ical':>10}{'+expand':>9}{'ours':>8}{'occ':>8}"
        f"{'ratio':>7}  per file: median worst"
    )
    for name, bodies in sets.items():
        report(name, bodies, args.rounds)
    if args.profile:
        profile(sets["members"], args.profile)


if __name__ == "__main__":
    main()
