"""Places as merging compares them: what a place is looked up by, and whether two agree."""

from __future__ import annotations

import re
from functools import lru_cache

from rapidfuzz import fuzz

from aggregator.normalise import normalised_title

_POSTCODE = re.compile(r"\b\d{4}\b")


def place_marks(location: str) -> set[str]:
    """What a place is looked up by: its postcodes and the first word of its name."""
    if not location:
        return set()
    marks = set(_POSTCODE.findall(location))
    name = normalised_title(location.split(",")[0]).split()
    if name and len(name[0]) > 2:
        marks.add(name[0])
    return marks


@lru_cache(maxsize=65536)
def place_agreement(a: str, b: str) -> str:
    """'same', 'different' or 'unknown' (one is not given, or they say too little)."""
    if not a or not b:
        return "unknown"
    codes_a, codes_b = set(_POSTCODE.findall(a)), set(_POSTCODE.findall(b))
    if codes_a and codes_b and not codes_a & codes_b:
        return "different"
    parts_a = [normalised_title(p) for p in a.split(",") if p.strip()]
    parts_b = [normalised_title(p) for p in b.split(",") if p.strip()]
    if parts_a and parts_b and parts_a[0].startswith("online") and parts_b[0].startswith("online"):
        return "same" if parts_a == parts_b else "different"  # Zoom is not Teams
    shared = any(fuzz.token_set_ratio(p, q) >= 85 for p in parts_a for q in parts_b)
    if (
        len(parts_a) >= 2
        and len(parts_b) >= 2
        and fuzz.token_set_ratio(parts_a[0], parts_b[0]) < 60
        and not shared
    ):
        return "different"  # "Hammer Bakker, ..." and "Marbæk Plantage, ..."
    if len(parts_a) >= 3 and len(parts_b) >= 3:
        numbers_a, numbers_b = set(re.findall(r"\d+", a)), set(re.findall(r"\d+", b))
        if not (numbers_a <= numbers_b or numbers_b <= numbers_a):
            return "different"  # "Mødelokale 1" and "Mødelokale 2" of one house
        # the same house, other rooms: "Mødelokale 1" and "Store sal" are two events
        odd_a = [p for p in parts_a if max(fuzz.ratio(p, q) for q in parts_b) < 85]
        odd_b = [p for p in parts_b if max(fuzz.ratio(p, q) for q in parts_a) < 85]
        if odd_a and odd_b:
            return "different"
    likeness = fuzz.token_set_ratio(normalised_title(a), normalised_title(b))
    if likeness < 50:
        return "different"
    return "same" if likeness >= 80 or fuzz.ratio(parts_a[0], parts_b[0]) >= 80 else "unknown"
