"""Occurrences of all sources -> network events. Pure: no I/O, no clock.

Rule 9: the same event published by several members is one event, credited to all.
Occurrences are joined (union-find, so order does not matter) when they have
- the same UID (and recurrence id), or the same event URL on the same day, or
- starts within `window` on the same local day (or whole hours apart, a member's time-zone
  mistake, with near-identical titles; or all-day against timed on the same day), similar
  normalised titles (rapidfuzz; status markers and organisation names removed), and places
  that do not contradict each other.
Copies from one source are never joined: a feed listing an event twice is collapsed before.
A group's network id is the one the store already knows for any of its members, else one
derived from its smallest identity, so ids survive restarts and members leaving.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from urllib.parse import urlsplit

from rapidfuzz import fuzz

from aggregator.model import MergedEvent, MergeSettings, Occurrence, Source, Status
from aggregator.normalise import event_id, fingerprint, iso, normalised_title, zone
from aggregator.reconcile import identity_of

_POSTCODE = re.compile(r"\b\d{4}\b")


class _Sets:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def merge(
    occurrences: Iterable[Occurrence],
    sources: Sequence[Source],
    settings: MergeSettings | None = None,
    known_ids: Mapping[str, str] | None = None,
) -> list[MergedEvent]:
    """The network events: one per group of occurrences that are the same event.

    The result does not depend on the order of `occurrences`; it is sorted by start, id.
    `known_ids` maps identities to the network ids the store has already given them.
    """
    settings = settings or MergeSettings()
    rank = {source.id: index for index, source in enumerate(sources)}
    by_id = {source.id: source for source in sources}
    items = sorted(
        (o for o in occurrences if o.source_id in rank),  # a removed source is not published
        key=lambda o: o.key,
    )
    sets = _Sets(len(items))
    _join_identical(items, sets)
    _join_similar(items, sets, settings, by_id)
    groups: dict[int, list[Occurrence]] = defaultdict(list)
    for index, occurrence in enumerate(items):
        groups[sets.find(index)].append(occurrence)
    known = known_ids or {}
    merged = [_merge_group(_group_id(g, known), g, rank, by_id) for g in groups.values()]
    merged.sort(key=lambda e: (iso(e.start), e.id))
    return merged


def _group_id(members: list[Occurrence], known: Mapping[str, str]) -> str:
    identities = sorted(identity_of(o) for o in members)
    remembered = sorted({known[i] for i in identities if i in known})
    if remembered:
        return remembered[0]
    return event_id(*identities[0].split("\x1f"))


def _join_identical(items: list[Occurrence], sets: _Sets) -> None:
    first: dict[str, int] = {}
    by_url: dict[tuple[str, date], int] = {}
    for index, occurrence in enumerate(items):
        uid, _, rid = identity_of(occurrence).partition("\x1f")
        key = f"{uid.strip().lower()}\x1f{rid}"
        if key in first:
            sets.union(first[key], index)
        else:
            first[key] = index
        url = _url_key(occurrence.url)
        if url:
            day = _local_day(occurrence, "UTC")
            for near in (day - timedelta(days=1), day, day + timedelta(days=1)):
                other = by_url.get((url, near))
                if other is not None and items[other].source_id != occurrence.source_id:
                    sets.union(other, index)
            by_url.setdefault((url, day), index)


#: how many of a title's rarest words it is compared on
_BLOCKING_WORDS = 3
#: words too common to say two titles are about the same thing
_STOP = frozenset(
    "om i for og med til på af en et den det de the of and in at on a an to with by from".split()
)


def _join_similar(
    items: list[Occurrence], sets: _Sets, settings: MergeSettings, sources: Mapping[str, Source]
) -> None:
    """Join copies alike in time, title and place. Candidates meet in blocks of (a title
    word, a local day): only copies that share a word on the same day are compared."""
    names = _name_index(sources.values())
    titles = [_comparable_title(o.title, names) for o in items]
    days = [_local_day(o, settings.network_zone) for o in items]
    words = [
        {w for w in title.split() if w not in _STOP and len(w) > 1} or set(title.split())
        for title in titles
    ]
    # block on each title's rarest words: copies of one event share those, while a word
    # every other title has ("workshop") would make too many pairs
    frequency = Counter(w for kept in words for w in kept)
    timed_blocks: dict[str, list[int]] = defaultdict(list)
    day_blocks: dict[tuple[str, date], list[int]] = defaultdict(list)
    for i, kept in enumerate(words):
        for word in sorted(kept, key=lambda w: (frequency[w], w))[:_BLOCKING_WORDS]:
            day_blocks[(word, days[i])].append(i)
            if not items[i].all_day:
                timed_blocks[word].append(i)
    reach = timedelta(hours=settings.max_zone_shift) + settings.window

    def consider(i: int, j: int) -> None:
        if items[i].source_id == items[j].source_id or sets.find(i) == sets.find(j):
            return
        threshold = _threshold(items[i], items[j], days[i], days[j], settings, reach)
        if threshold is not None and _alike(i, j, titles, items, threshold):
            sets.union(i, j)

    # timed copies: a sweep over starts in each block, so each meets only its near ones
    # (a zone mistake near midnight crosses into the next day, and is still met)
    for block in timed_blocks.values():
        block.sort(key=lambda i: (items[i].start, i))
        starts = [items[i].start for i in block]
        for position, i in enumerate(block):
            # indexes, not block[position + 1:]: a slice per item would copy the block
            for other in range(position + 1, len(block)):
                if starts[other] - starts[position] > reach:
                    break
                consider(i, block[other])
    # all-day copies meet every copy of their day that shares a word
    for i, occurrence in enumerate(items):
        if occurrence.all_day:
            for word in words[i]:
                for j in day_blocks.get((word, days[i]), ()):
                    if j != i:
                        consider(min(i, j), max(i, j))


def _threshold(
    a: Occurrence, b: Occurrence, day_a: date, day_b: date, settings: MergeSettings, reach
) -> float | None:
    """How alike the titles must be for two copies at these times, or None: never."""
    if a.all_day or b.all_day:
        if day_a != day_b:
            return None
        both = a.all_day and b.all_day
        return settings.title_threshold if both else settings.strict_threshold
    gap = abs(a.start - b.start)
    if gap <= settings.window:
        return settings.title_threshold
    hours = gap.total_seconds() / 3600
    if gap <= reach and hours == int(hours):
        return settings.strict_threshold  # a whole-hour time-zone mistake
    return None


def _alike(i: int, j: int, titles: list[str], items: list[Occurrence], threshold: float) -> bool:
    a, b = items[i], items[j]
    place = _place_agreement(a.location, b.location)
    if place == "different":
        return False
    if place == "same" and not a.all_day and not b.all_day and a.start == b.start:
        # the same house at the same minute: co-hosts word (or translate) titles freely
        threshold = min(threshold, _SAME_PLACE_THRESHOLD)
    else:
        # each title has a word the other lacks ("for begyndere" / "for øvede"): parallel
        # sessions, unless the titles are near-identical
        words_a, words_b = set(titles[i].split()) - _STOP, set(titles[j].split()) - _STOP
        if words_a - words_b and words_b - words_a:
            threshold = max(threshold, _PARALLEL_THRESHOLD)
    return fuzz.token_set_ratio(titles[i], titles[j]) >= threshold


#: title likeness needed when each title has a word the other lacks
_PARALLEL_THRESHOLD = 90.0


#: title likeness enough for copies at the same place and the same minute
_SAME_PLACE_THRESHOLD = 45.0


@lru_cache(maxsize=65536)
def _place_agreement(a: str, b: str) -> str:
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


def _name_index(sources) -> dict[str, list[str]]:
    """Member names (normalised), by their first word, for taking them out of titles."""
    index: dict[str, list[str]] = defaultdict(list)
    for source in sources:
        name = normalised_title(source.name)
        if name:
            index[name.split()[0]].append(name)
    return index


def _comparable_title(title: str, names: Mapping[str, list[str]]) -> str:
    text = normalised_title(title)
    for word in set(text.split()):
        for name in names.get(word, ()):
            if name in text:
                text = text.replace(name, " ")
    words = [_GLOSSARY.get(word, word) for word in text.split()]
    return " ".join(words) or normalised_title(title)


#: Danish words of NGO event titles in English, so a title and its translation compare
_GLOSSARY = {
    "generalforsamling": "general meeting",
    "arsmode": "annual meeting",
    "frivilligdag": "volunteer day",
    "frivillige": "volunteers",
    "frivillig": "volunteer",
    "klimacafe": "climate cafe",
    "sprogcafe": "language cafe",
    "velkomstmode": "welcome meeting",
    "julefrokost": "christmas lunch",
    "nye": "new",
    "dansk": "danish",
    "engelsk": "english",
    "foredrag": "talk",
    "debatmode": "debate",
    "debat": "debate",
    "filmaften": "film night",
    "loppemarked": "flea market",
    "netvaerksmode": "network meeting",
    "mode": "meeting",
    "arbejdsmarked": "labour market",
    "arbejdsmarkedet": "labour market",
    "introduktion": "introduction",
    "intro": "introduction",
    "ungdomsorganisationer": "youth organisations",
    "strandrydning": "beach clean up",
    "klimahandling": "climate action",
    "klima": "climate",
    "foreninger": "associations",
    "forening": "association",
    "syd": "south",
    "set": "seen",
    "fra": "from",
    "til": "to",
    "og": "and",
    "pa": "on",
    "i": "in",
    "om": "on",
    "med": "with",
    "unge": "young",
    "born": "children",
    "kursus": "course",
    "konference": "conference",
    "workshop": "workshop",
    "sommerfest": "summer party",
    "jul": "christmas",
    "nytarskur": "new year reception",
    "indsamling": "collection",
    "vandring": "walk",
    "naturvandring": "nature walk",
}


def _local_day(occurrence: Occurrence, zone_name: str) -> date:
    if isinstance(occurrence.start, datetime):
        return occurrence.start.astimezone(zone(zone_name)).date()
    return occurrence.start


def _url_key(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    path = parts.path.rstrip("/")
    if path.count("/") < 1 or len(path) < 2:
        return None  # a site's front page is no event's address
    return f"{parts.netloc.lower().removeprefix('www.')}{path}"


def _merge_group(
    eid: str, members: list[Occurrence], rank: dict[str, int], by_id: dict[str, Source]
) -> MergedEvent:
    """One event from its members' copies: the owner's version wins (the member whose
    homepage is the event's site, else the first in the configuration); organisers and
    categories are the union; it is cancelled only when every member says so."""
    members.sort(key=lambda o: (not _owns(by_id[o.source_id], o.url), rank[o.source_id], o.key))
    gone = (Status.CANCELLED, Status.POSTPONED)
    live = [o for o in members if o.status not in gone]
    # a merge never makes an event read as cancelled while a member still lists it
    first = live[0] if live else members[0]
    source_ids = tuple(sorted(dict.fromkeys(o.source_id for o in members), key=rank.get))
    categories: dict[str, str] = {}  # casefolded -> first spelling seen
    for occurrence in members:
        for category in occurrence.categories + by_id[occurrence.source_id].categories:
            categories.setdefault(category.casefold(), category)
    cancelled_by = (
        tuple(dict.fromkeys(by_id[o.source_id].name for o in members if o.status in gone))
        if live
        else ()
    )
    values = {
        "id": eid,
        "uid": first.uid,
        "title": first.title,
        "start": first.start,
        "end": first.end,
        "all_day": first.all_day,
        "tzid": first.tzid,
        "description": first.description,
        "url": first.url or next((o.url for o in members if o.url), None),
        "location": first.location or next((o.location for o in members if o.location), ""),
        "status": first.status,
        "categories": tuple(categories.values()),
        "organisers": tuple(by_id[s].name for s in source_ids),
        "source_ids": source_ids,
        "members": tuple(o.key for o in members),
        "removed": all(o.removed_at is not None for o in members),
        "identities": tuple(sorted({identity_of(o) for o in members})),
        "cancelled_by": cancelled_by,
        "copies": tuple((o.source_id, o.title, o.url) for o in members),
    }
    # what subscribers see: not the member UIDs or keys, which a feed may change at will
    content = {
        k: iso(v) if k in ("start", "end") else v
        for k, v in values.items()
        if k not in ("uid", "members", "identities", "copies")
    }
    content["status"] = first.status.value
    return MergedEvent(**values, fingerprint=fingerprint(content))


def _owns(source: Source, url: str | None) -> bool:
    if not source.homepage or not url:
        return False
    home = urlsplit(source.homepage).netloc.lower().removeprefix("www.")
    there = urlsplit(url).netloc.lower().removeprefix("www.")
    return bool(home) and home == there
