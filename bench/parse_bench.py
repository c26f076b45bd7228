"""Parsing speed: our parse stage against bare icalendar + recurring-ical-events, same files.

    .venv/bin/python bench/parse_bench.py [--rounds N]

The baseline does the least a reader must do (parse, expand the horizon); ours also
normalises, keys, fingerprints and collects warnings. Prints per-file-set figures and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import recurring_ical_events

from aggregator.model import Limits
from aggregator.parse import decode_body
from aggregator.parse.ical import parse_calendar

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
LIMITS = Limits()


def files() -> dict[str, list[Path]]:
    corpus = sorted((ROOT.parent / "shared" / "corpus" / "ics").glob("*.ics"))
    return {
        "demo feeds": sorted((ROOT / "examples" / "feeds").glob("*.ics")),
        "shared corpus": corpus,
    }


def baseline(data: bytes) -> int:
    try:
        calendars = icalendar.Calendar.from_ical(data, multiple=True)
    except Exception:  # noqa: BLE001 - the baseline simply gives up on a broken file
        return 0
    start, stop = NOW - timedelta(days=LIMITS.past_days), NOW + timedelta(days=LIMITS.future_days)
    count = 0
    for calendar in calendars:
        try:
            series_list = recurring_ical_events.of(calendar, skip_bad_series=True).series
        except Exception:  # noqa: BLE001 - e.g. KeyError for an event without DTSTART
            continue
        for series in series_list:
            try:
                for _ in series.between(start, stop):
                    count += 1
                    if count >= LIMITS.max_occurrences:
                        return count
            except Exception:  # noqa: BLE001, S112
                continue
    return count


def ours(data: bytes) -> int:
    text, _ = decode_body(data)
    try:
        parsed = parse_calendar(
            text,
            url="bench",
            source_id="bench",
            floating_zone="Europe/Copenhagen",
            network_zone="Europe/Copenhagen",
            now=NOW,
            limits=LIMITS,
        )
    except Exception:  # noqa: BLE001 - ParseError: counted as nothing, like the baseline
        return 0
    return len(parsed.occurrences)


def timed(function, bodies: list[bytes], rounds: int) -> tuple[float, int]:
    runs, count = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        count = sum(function(body) for body in bodies)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(
        f"horizon {LIMITS.past_days} days back, {LIMITS.future_days} ahead; "
        f"median of {args.rounds} rounds"
    )
    print(
        f"{'files':<16}{'n':>4}{'MB':>7}{'baseline s':>12}{'occ':>7}{'ours s':>9}{'occ':>7}"
        f"{'ratio':>7}{'ours occ/s':>12}"
    )
    for name, paths in files().items():
        bodies = [p.read_bytes() for p in paths]
        megabytes = sum(map(len, bodies)) / 1e6
        base_s, base_n = timed(baseline, bodies, args.rounds)
        our_s, our_n = timed(ours, bodies, args.rounds)
        print(
            f"{name:<16}{len(bodies):>4}{megabytes:>7.2f}{base_s:>12.3f}{base_n:>7}"
            f"{our_s:>9.3f}{our_n:>7}{our_s / base_s:>7.2f}{our_n / our_s:>12,.0f}"
        )


if __name__ == "__main__":
    main()
