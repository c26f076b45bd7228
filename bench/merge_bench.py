"""Merging speed: N occurrences from 1,000 sources, and how time grows with N.

    .venv/bin/python bench/merge_bench.py [--sizes 23000,57500,115000,230000] [--series 0.5]

Generated like a real network: half of the occurrences come from recurring series (weekly,
fortnightly, monthly; now and then a co-host lists one of their dates), the rest are one-off
events (titles drawn from a vocabulary of NGO events, starts over two years, mostly daytime),
a tenth of them published by two or three members (retitled, some an hour off), a few
all-day. `--series 0` makes every event a one-off with its own title: the worst case.
Prints the time per size, the
time per 1,000 occurrences (flat when growth is linear), the number of events, and the
precision and recall of the pairs of copies it joined (the generator knows which are one);
beside it the baseline, a merge by UID alone, with its time, its recall and the ratio.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from aggregator.merge import merge
from aggregator.model import Occurrence, Source, Status
from aggregator.normalise import iso, occurrence_key

WORDS = (
    "klimacafé workshop foredrag debatmøde generalforsamling fundraising frivilligdag "
    "konference webinar koncert loppemarked sprogcafé lektiecafé fællesspisning "
    "netværksmøde temadag studiekreds filmaften byttemarked repair café"
).split()
TOPICS = (
    "CSRD bæredygtighed demokrati Sahel Tanzania unge frivillige klima vand køn "
    "Ukraine flygtninge biodiversitet mad energi kunst børn ældre"
).split()
PLACES = (
    "Aarhus Odense Aalborg Esbjerg Vejle Horsens Randers Kolding Herning Roskilde Næstved "
    "Silkeborg Svendborg Viborg Holstebro Nørrebro Vesterbro Amager Valby Frederiksberg"
).split()
START = datetime(2026, 9, 1, tzinfo=UTC)


#: the share of occurrences that come from recurring series (weekly, fortnightly, monthly)
SERIES = 0.5
#: intervals of series in days, and the occurrences a series has over two years
INTERVALS = (7, 14, 28)
_PER_SERIES = sum(730 // days for days in INTERVALS) / len(INTERVALS)
#: a one-off event has this many copies on average (a tenth are co-published by 1-2 more)
_PER_EVENT = 1.15


def network(
    n: int, sources: int = 1000, seed: int = 7, series: float = SERIES
) -> tuple[list[Occurrence], list[Source]]:
    occurrences, members, _ = labelled_network(n, sources, seed, series)
    return occurrences, members


def labelled_network(
    n: int, sources: int = 1000, seed: int = 7, series: float = SERIES
) -> tuple[list[Occurrence], list[Source], dict[str, int]]:
    """The network, and for each occurrence key the event it is a copy of."""
    rng = random.Random(seed)
    # a network of 1,000 members talks about many things: a vocabulary that grows with it
    syllables = ["ka", "mo", "ri", "sa", "te", "lu", "vo", "ne", "di", "ga", "pe", "fo", "bi"]
    vocabulary = sorted(
        {"".join(rng.choice(syllables) for _ in range(rng.randrange(2, 5))) for _ in range(8000)}
    )
    members = [Source(id=f"s{i}", name=f"Forening {i}", url=f"/s{i}.ics") for i in range(sources)]
    occurrences: list[Occurrence] = []
    truth: dict[str, int] = {}
    events = 0

    def add(member: int, uid: str, rid: str | None, title: str, start, all_day: bool) -> None:
        key = occurrence_key(f"s{member}", uid, rid)
        truth[key] = events
        occurrences.append(
            Occurrence(
                key=key,
                source_id=f"s{member}",
                uid=uid,
                recurrence_id=rid,
                title=title,
                start=start,
                end=start + (timedelta(days=1) if all_day else timedelta(hours=2)),
                all_day=all_day,
                status=Status.SCHEDULED,
                fingerprint=key,
            )
        )

    # how often a step starts a series, for `series` of the occurrences to be in one
    chance = series * _PER_EVENT / (_PER_SERIES * (1 - series) + series * _PER_EVENT)
    while len(occurrences) < n:
        owner = rng.randrange(sources)
        title = (
            f"{rng.choice(WORDS).capitalize()} om {rng.choice(TOPICS)} og {rng.choice(vocabulary)} "
            f"i {rng.choice(PLACES)}"
        )
        if rng.random() < chance:  # a series; now and then a co-host lists one of its dates
            interval, hour = rng.choice(INTERVALS), rng.randrange(8, 21)
            first = START + timedelta(days=rng.randrange(interval), hours=hour)
            uid = f"{owner}-series-{len(occurrences)}@bench"
            for week in range(730 // interval):
                start = first + timedelta(days=week * interval)
                add(owner, uid, iso(start), title, start, False)
                if rng.random() < 0.02:
                    cohost = rng.randrange(sources)
                    add(cohost, f"{cohost}-{len(occurrences)}@bench", None, title, start, False)
                events += 1
            continue
        day = rng.randrange(730)
        if rng.random() < 0.03:
            start, all_day = date(2026, 9, 1) + timedelta(days=day), True
        else:
            start, all_day = START + timedelta(days=day, hours=rng.randrange(8, 21)), False
        add(owner, f"{owner}-{len(occurrences)}@bench", None, title, start, all_day)
        if rng.random() < 0.1:  # co-published, retitled, now and then an hour off
            for _ in range(rng.randrange(1, 3)):
                member = rng.randrange(sources)
                shift = timedelta(hours=1) if not all_day and rng.random() < 0.2 else timedelta(0)
                uid = f"{member}-{len(occurrences)}@bench"
                add(member, uid, None, f"Invitation: {title}", start + shift, all_day)
        events += 1
    return occurrences[:n], members, truth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="23000,57500,115000,230000")
    parser.add_argument(
        "--series",
        type=float,
        default=SERIES,
        help="share of occurrences from recurring series; 0: every title distinct (worst case)",
    )
    args = parser.parse_args()
    columns = (
        ("occurrences", 12),
        ("seconds", 9),
        ("ms/1k", 7),
        ("events", 9),
        ("precision", 10),
        ("recall", 7),
        ("UID only s", 11),
        ("ms/1k", 7),
        ("recall", 7),
        ("ratio", 7),
    )
    print("".join(f"{name:>{width}}" for name, width in columns))
    for n in (int(s) for s in args.sizes.split(",")):
        occurrences, sources, truth = labelled_network(n, series=args.series)
        # as the store hands them over: in the order of their keys, made in that order
        occurrences = [replace(o) for o in sorted(occurrences, key=lambda o: o.key)]
        started = time.perf_counter()
        events = merge(occurrences, sources)
        took = time.perf_counter() - started
        precision, recall = pairwise([e.members for e in events], truth)
        gc.disable()  # as merge does: else the collector walks the heap, not the baseline
        started = time.perf_counter()
        groups = uid_only(occurrences)
        baseline = time.perf_counter() - started
        gc.enable()
        _, baseline_recall = pairwise(groups, truth)
        values = (
            f"{n:,}",
            f"{took:.2f}",
            f"{took / n * 1e6:.1f}",
            f"{len(events):,}",
            f"{precision:.4f}",
            f"{recall:.4f}",
            f"{baseline:.2f}",
            f"{baseline / n * 1e6:.1f}",
            f"{baseline_recall:.4f}",
            f"{took / baseline:.1f}",
        )
        widths = [width for _, width in columns]
        print("".join(f"{value:>{width}}" for value, width in zip(values, widths, strict=True)))


def uid_only(occurrences: list[Occurrence]) -> list[tuple[str, ...]]:
    """The baseline: a merge by UID alone (what mergecal does), one pass with a dict, the
    keys of each group."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for o in occurrences:
        groups.setdefault((o.uid.strip().lower(), o.recurrence_id), []).append(o.key)
    return [tuple(keys) for keys in groups.values()]


def pairwise(groups: list[tuple[str, ...]], truth: dict[str, int]) -> tuple[float, float]:
    """Pairs of copies put in one group that are one event, and the other way round."""
    merged = right = 0
    for keys in groups:
        merged += len(keys) * (len(keys) - 1) // 2
        right += sum(c * (c - 1) // 2 for c in Counter(truth[k] for k in keys).values())
    sizes = Counter(truth[k] for keys in groups for k in keys)
    real = sum(c * (c - 1) // 2 for c in sizes.values())
    return (right / merged if merged else 1.0), (right / real if real else 1.0)


if __name__ == "__main__":
    main()
