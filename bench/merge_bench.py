"""Merging speed: N occurrences from 1,000 sources, and how time grows with N.

    .venv/bin/python bench/merge_bench.py [--sizes 23000,57500,115000,230000]

Generated like a real network: most events are a member's own (titles drawn from a
vocabulary of NGO events, starts over two years, mostly daytime), some published by two or
three members (retitled, some an hour off), a few all-day. Prints the time per size, the
time per 1,000 occurrences (flat when growth is linear), the number of events, and the
precision and recall of the pairs of copies it joined (the generator knows which are one).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

from aggregator.merge import merge
from aggregator.model import Occurrence, Source, Status
from aggregator.normalise import occurrence_key

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


def network(n: int, sources: int = 1000, seed: int = 7) -> tuple[list[Occurrence], list[Source]]:
    occurrences, members, _ = labelled_network(n, sources, seed)
    return occurrences, members


def labelled_network(
    n: int, sources: int = 1000, seed: int = 7
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
    while len(occurrences) < n:
        event = len(truth)  # a new number for each event: truth grows by its copies
        owner = rng.randrange(sources)
        title = (
            f"{rng.choice(WORDS).capitalize()} om {rng.choice(TOPICS)} og {rng.choice(vocabulary)} "
            f"i {rng.choice(PLACES)}"
        )
        day = rng.randrange(730)
        if rng.random() < 0.03:
            start, end, all_day = date(2026, 9, 1) + timedelta(days=day), None, True
            end = start + timedelta(days=1)
        else:
            start = START + timedelta(days=day, hours=rng.randrange(8, 21))
            end, all_day = start + timedelta(hours=2), False
        copies = [(owner, title, start)]
        if rng.random() < 0.1:  # co-published
            for _ in range(rng.randrange(1, 3)):
                shift = timedelta(hours=1) if not all_day and rng.random() < 0.2 else timedelta(0)
                copies.append((rng.randrange(sources), f"Invitation: {title}", start + shift))
        for member, text, begins in copies:
            uid = f"{member}-{len(occurrences)}@bench"
            key = occurrence_key(f"s{member}", uid, None)
            truth[key] = event
            occurrences.append(
                Occurrence(
                    key=key,
                    source_id=f"s{member}",
                    uid=uid,
                    recurrence_id=None,
                    title=text,
                    start=begins,
                    end=end if all_day else begins + timedelta(hours=2),
                    all_day=all_day,
                    status=Status.SCHEDULED,
                    fingerprint=key,
                )
            )
    return occurrences[:n], members, truth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="23000,57500,115000,230000")
    args = parser.parse_args()
    header = ("occurrences", 12), ("seconds", 10), ("ms per 1k", 11), ("events", 9)
    print("".join(f"{name:>{width}}" for name, width in header) + f"{'precision':>11}{'recall':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        occurrences, sources, truth = labelled_network(n)
        started = time.perf_counter()
        events = merge(occurrences, sources)
        took = time.perf_counter() - started
        precision, recall = _pairwise(events, truth)
        print(
            f"{n:>12,}{took:>10.2f}{took / n * 1e6:>11.1f}{len(events):>9,}"
            f"{precision:>11.4f}{recall:>8.4f}"
        )


def _pairwise(events, truth: dict[str, int]) -> tuple[float, float]:
    """Pairs of copies put in one event that are one event, and the other way round."""
    merged = right = 0
    for event in events:
        merged += len(event.members) * (len(event.members) - 1) // 2
        right += sum(c * (c - 1) // 2 for c in Counter(truth[k] for k in event.members).values())
    sizes = Counter(truth[k] for event in events for k in event.members)
    real = sum(c * (c - 1) // 2 for c in sizes.values())
    return (right / merged if merged else 1.0), (right / real if real else 1.0)


if __name__ == "__main__":
    main()
