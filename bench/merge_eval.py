"""How well merging tells copies of one event from different events: the labelled pairs
in tests/fixtures/merge/pairs.json, each merged on its own.

    .venv/bin/python bench/merge_eval.py [--wrong]

Prints precision and recall (a pair merged that should be is a true positive), and the
pairs it gets wrong with --wrong.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from aggregator.merge import merge
from aggregator.model import Occurrence, Source
from aggregator.normalise import occurrence_key

PAIRS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "merge" / "pairs.json"


@dataclass(frozen=True)
class Result:
    case: str
    same: bool
    merged: bool
    note: str
    a: dict
    b: dict


def _occurrence(copy: dict) -> Occurrence:
    all_day = "T" not in copy["start"]
    parse = date.fromisoformat if all_day else datetime.fromisoformat
    return Occurrence(
        key=occurrence_key(copy["source"], copy["uid"], None),
        source_id=copy["source"],
        uid=copy["uid"],
        recurrence_id=None,
        title=copy["title"],
        start=parse(copy["start"]),
        end=parse(copy["end"]),
        all_day=all_day,
        location=copy.get("location") or "",
        url=copy.get("url"),
    )


def evaluate() -> list[Result]:
    data = json.loads(PAIRS.read_text(encoding="utf-8"))
    sources = [
        Source(id=s["id"], name=s["name"], url="", homepage=s.get("homepage"))
        for s in data["sources"]
    ]
    results = []
    for pair in data["pairs"]:
        events = merge([_occurrence(pair["a"]), _occurrence(pair["b"])], sources)
        results.append(
            Result(
                pair["case"],
                pair["same"],
                len(events) == 1,
                pair.get("note", ""),
                pair["a"],
                pair["b"],
            )
        )
    return results


def scores(results: list[Result]) -> tuple[float, float]:
    tp = sum(r.same and r.merged for r in results)
    fp = sum(not r.same and r.merged for r in results)
    fn = sum(r.same and not r.merged for r in results)
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wrong", action="store_true")
    args = parser.parse_args()
    results = evaluate()
    precision, recall = scores(results)
    cases = sorted({r.case for r in results})
    print(f"{'case':<28}{'label':<7}{'pairs':>6}{'right':>7}")
    for case in cases:
        mine = [r for r in results if r.case == case]
        right = sum(r.same == r.merged for r in mine)
        print(f"{case:<28}{'same' if mine[0].same else 'diff':<7}{len(mine):>6}{right:>7}")
    print(f"\n{len(results)} pairs: precision {precision:.3f}, recall {recall:.3f}")
    if args.wrong:
        for r in results:
            if r.same != r.merged:
                print(
                    f"- {r.case}: {r.a['title']!r} {r.a['start']} / {r.b['title']!r} "
                    f"{r.b['start']} ({r.note})"
                )


if __name__ == "__main__":
    main()
