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
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
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


def _join_similar(
    items: list[Occurrence], sets: _Sets, settings: MergeSettings, sources: Mapping[str, Source]
) -> None:
    names = [normalised_title(s.name) for s in sources.values()]
    titles = [_comparable_title(o.title, names) for o in items]
    words = [frozenset(t.split()) for t in titles]
    timed = sorted((i for i, o in enumerate(items) if not o.all_day), key=lambda i: items[i].start)
    reach = timedelta(hours=settings.max_zone_shift) + settings.window
    # a sweep over starts: each occurrence meets only those close enough in time
    for position, i in enumerate(timed):
        start = items[i].start
        for j in timed[position + 1 :]:
            gap = items[j].start - start
            if gap > reach:
                break
            if items[i].source_id == items[j].source_id or not words[i] & words[j]:
                continue
            threshold = settings.title_threshold
            if gap > settings.window:
                hours = gap.total_seconds() / 3600
                if hours != int(hours):
                    continue  # not a whole-hour zone mistake
                threshold = settings.strict_threshold
            if _alike(i, j, titles, items, threshold):
                sets.union(i, j)
    # all-day occurrences meet everything on their day(s)
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, occurrence in enumerate(items):
        by_day[_local_day(occurrence, settings.network_zone)].append(i)
    for i, occurrence in enumerate(items):
        if not occurrence.all_day:
            continue
        for j in by_day[occurrence.start]:
            if j == i or items[j].source_id == occurrence.source_id:
                continue
            if not words[i] & words[j]:
                continue
            threshold = settings.title_threshold if items[j].all_day else settings.strict_threshold
            if _alike(i, j, titles, items, threshold):
                sets.union(i, j)


def _alike(i: int, j: int, titles: list[str], items: list[Occurrence], threshold: float) -> bool:
    if fuzz.token_set_ratio(titles[i], titles[j]) < threshold:
        return False
    return not _places_contradict(items[i].location, items[j].location)


def _places_contradict(a: str, b: str) -> bool:
    """Two places that are clearly not the same: different postcodes, or nothing in common."""
    if not a or not b:
        return False
    codes_a, codes_b = set(_POSTCODE.findall(a)), set(_POSTCODE.findall(b))
    if codes_a and codes_b and not codes_a & codes_b:
        return True
    return fuzz.token_set_ratio(normalised_title(a), normalised_title(b)) < 50


def _comparable_title(title: str, organisation_names: list[str]) -> str:
    text = normalised_title(title)
    for name in organisation_names:
        if name and name in text:
            text = text.replace(name, " ")
    return " ".join(text.split()) or normalised_title(title)


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
