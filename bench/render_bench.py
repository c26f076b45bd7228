"""Rendering speed: render_vevent (fast path) against icalendar (render_vevent_reference).

    .venv/bin/python bench/render_bench.py [--events 20000] [--repeat 3] [--seed 7]

Renders the same generated events both ways in the same run, alternating which goes first
in each round, and prints events/s of each (best of the rounds) and the ratio. The events
are like a member network's: timed events in Europe/Copenhagen (some in other zones or UTC),
a sixth all-day, some cancelled, moved or cancelled by a co-host, descriptions from a line
to a few paragraphs with Danish letters, commas and semicolons, categories and links. It
checks that both ways give the same bytes before timing.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from aggregator.model import MergedEvent, Network, Status
from aggregator.render.ics import render_vevent, render_vevent_reference

WORDS = (
    "klimacafé workshop foredrag debatmøde generalforsamling frivilligdag konference "
    "webinar koncert loppemarked sprogcafé fællesspisning netværksmøde temadag filmaften "
    "bæredygtighed demokrati unge, frivillige; klima vand køn flygtninge biodiversitet mad "
    "energi kunst børn ældre Aarhus Odense Aalborg Nørrebro Vesterbro Amager Valby"
).split()
ZONES = ["Europe/Copenhagen"] * 8 + ["Europe/London", "America/New_York", "UTC", None]
STATUSES = [Status.SCHEDULED] * 12 + [Status.CANCELLED, Status.TENTATIVE, Status.POSTPONED]
START = datetime(2026, 9, 1, tzinfo=UTC)
NETWORK = Network(name="Netværket", base_url="https://kalender.example.dk")


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def generated(n: int, seed: int) -> list[MergedEvent]:
    """n network events with the mix a member network publishes."""
    rng = random.Random(seed)
    events = []
    for i in range(n):
        all_day = rng.random() < 1 / 6
        start: date | datetime = START + timedelta(
            days=rng.randrange(730), hours=rng.randrange(8, 21)
        )
        if all_day:
            start = start.date()
            end = start + timedelta(days=rng.choice([1, 1, 2, 3]))
        else:
            end = start + timedelta(minutes=rng.choice([60, 90, 120, 180]))
        paragraphs = rng.choice([0, 1, 1, 2, 4])
        description = "\n\n".join(
            " ".join(sentence(rng, rng.randrange(6, 18)) for _ in range(rng.randrange(1, 6)))
            for _ in range(paragraphs)
        )
        moved = rng.random() < 0.05
        events.append(
            MergedEvent(
                id=f"{i:024x}",
                uid=f"{i}@member.example",
                title=sentence(rng, rng.randrange(2, 8)),
                start=start,
                end=end,
                all_day=all_day,
                tzid=rng.choice(ZONES),
                description=description,
                url=rng.choice([None, f"https://member{i % 97}.example.dk/events/{i}?lang=da"]),
                location=rng.choice(["", "Foreningshuset, Nørregade 12, 8000 Aarhus C"]),
                status=rng.choice(STATUSES),
                categories=tuple(
                    rng.sample(["klima", "kultur", "unge", "demokrati"], rng.randrange(3))
                ),
                organisers=tuple(f"Forening {k}" for k in range(rng.choice([1, 1, 1, 2]))),
                source_ids=("alpha",),
                members=(f"alpha-{i}",),
                fingerprint=f"{i}",
                previous_start=start - timedelta(days=7) if moved else None,
                cancelled_by=("Forening B",) if rng.random() < 0.03 else (),
            )
        )
    return events


Render = Callable[[MergedEvent, int, datetime, datetime, Network], bytes]


def rate(render: Render, events: list[MergedEvent]) -> float:
    """Events per second of one pass."""
    created = modified = datetime(2026, 11, 25, 12, tzinfo=UTC)
    began = time.perf_counter()
    for sequence, event in enumerate(events):
        render(event, sequence % 5, created, modified, NETWORK)
    return len(events) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    events = generated(args.events, args.seed)
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    for event in events[:2000]:
        fast = render_vevent(event, 1, now, now, NETWORK)
        assert fast == render_vevent_reference(event, 1, now, now, NETWORK), event.id
    size = sum(len(render_vevent(e, 1, now, now, NETWORK)) for e in events) / len(events)
    print(f"{len(events):,} events, {size:,.0f} bytes each on average; same bytes both ways")
    fast_rates, reference_rates = [], []
    for round_ in range(args.repeat):
        pair = [(fast_rates, render_vevent), (reference_rates, render_vevent_reference)]
        for rates, render in pair if round_ % 2 == 0 else pair[::-1]:
            rates.append(rate(render, events))
    fast, reference = max(fast_rates), max(reference_rates)
    print(f"icalendar (reference): {reference:>9,.0f} events/s")
    print(f"fast path:             {fast:>9,.0f} events/s")
    print(f"ratio fast/reference:  {fast / reference:>9.1f}x   (best of {args.repeat} rounds each)")
    ratios = ", ".join(f"{f / r:.1f}" for f, r in zip(fast_rates, reference_rates, strict=True))
    print(f"ratio per round:       {ratios}")


if __name__ == "__main__":
    main()
