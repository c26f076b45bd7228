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

import gc
import hashlib
import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from itertools import chain
from operator import attrgetter, sub
from urllib.parse import urlsplit

from rapidfuzz import fuzz

from aggregator.model import MergedEvent, MergeSettings, Occurrence, Source, Status
from aggregator.normalise import (
    event_id,
    from_iso,
    iso,
    normalised_title,
    normalised_titles,
    occurrence_fingerprint,
    zone,
)
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

    def roots(self) -> list[int]:
        """The root of each element (every path compressed to it), in one pass rather
        than a find each: a parent is always smaller than its child (union makes the
        smaller root the parent), so by the time an element comes its parent points at
        their root."""
        parent = self.parent
        for i, p in enumerate(parent):
            parent[i] = parent[p]
        return parent


def merge(
    occurrences: Iterable[Occurrence],
    sources: Sequence[Source],
    settings: MergeSettings | None = None,
    known_ids: Mapping[str, str] | None = None,
) -> list[MergedEvent]:
    """The network events: one per group of occurrences that are the same event.

    The result does not depend on the order of `occurrences`: events come in the order of
    their smallest member key.
    `known_ids` maps identities to the network ids the store has already given them.
    """
    with _without_cycle_collection():
        return _merge(occurrences, sources, settings or MergeSettings(), known_ids or {})


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Merging makes a few objects per occurrence and no reference cycles; the cycle
    collector would walk them again and again (a fifth of the time at 230,000). The events
    it returns live until the next merge: they join the oldest generation at once (freeze,
    then unfreeze) rather than be walked by the young ones on their way there."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def _merge(
    occurrences: Iterable[Occurrence],
    sources: Sequence[Source],
    settings: MergeSettings,
    known: Mapping[str, str],
) -> list[MergedEvent]:
    rank = {source.id: index for index, source in enumerate(sources)}
    by_id = {source.id: source for source in sources}
    items = sorted(
        [o for o in occurrences if o.source_id in rank],  # a removed source is not published
        key=attrgetter("key"),
    )
    # joining by identity and naming the events both need each one: made once
    identities = list(map(identity_of, items))
    sets = _Sets(len(items))
    _join_identical(items, identities, sets)
    _join_similar(items, sets, settings, by_id)
    # a group's root is its smallest index, so events come in the order of their first
    # member. Most groups are that one member: only the others are gathered in lists
    roots = sets.roots()
    others: dict[int, list[int]] = defaultdict(list)
    for index, root in enumerate(roots):
        if root != index:
            others[root].append(index)
    sites = {source.id: _site(source.homepage) for source in sources}
    events = []
    for index, root in enumerate(roots):
        if root != index:
            continue
        if index in others:
            group = [index, *others[index]]
            members = [items[i] for i in group]
            member_identities = [identities[i] for i in group]
        else:
            members, member_identities = (items[index],), (identities[index],)
        events.append(_merge_group(members, member_identities, known, rank, by_id, sites))
    return events


def _join_identical(items: list[Occurrence], identities: list[str], sets: _Sets) -> None:
    first: dict[tuple[str, str], int] = {}
    by_url: dict[tuple[str, date], int] = {}
    for index, occurrence in enumerate(items):
        uid, _, rid = identities[index].partition("\x1f")
        other = first.setdefault((uid.strip().lower(), rid), index)
        if other != index:
            sets.union(other, index)
        url = occurrence.url and _url_key(occurrence.url)
        if url:
            day = _local_day(occurrence, "UTC")
            for near in (day - timedelta(days=1), day, day + timedelta(days=1)):
                other = by_url.get((url, near))
                if other is not None and items[other].source_id != occurrence.source_id:
                    sets.union(other, index)
            by_url.setdefault((url, day), index)


#: words too common to say two titles are about the same thing
_STOP = frozenset(
    "om i for og med til på af en et den det de the of and in at on a an to with by from".split()
)
#: a title word in more than this share of all titles is common: it is not looked up by
#: itself (at 230,000 occurrences, "workshop" would meet every workshop of the hour)
_COMMON = 0.01


class _Title:
    """A title as merging compares it."""

    __slots__ = ("text", "words", "key_words", "probes", "rarest", "indexed")

    def __init__(self, text: str, split: list[str]) -> None:
        """`text`: normalised (words and single spaces); `split`: its words."""
        self.text = text
        #: every word but the stop words, for telling parallel sessions apart
        self.words = set(split) - _STOP
        #: the words it can be found by: not single letters, unless there is nothing else
        if self.words and 1 not in map(len, self.words):
            self.key_words = self.words
        else:
            self.key_words = {w for w in self.words if len(w) > 1} or set(split)
        #: set by _choose_probes: the words it looks for copies by (rarest first), the
        #: rarest one, and the words it is found by, which some title looks by
        self.probes: tuple[str, ...] = ()
        self.rarest: str | None = None
        self.indexed: Set[str] = frozenset()


def _choose_probes(titles: Sequence[_Title]) -> None:
    """Each title looks for its copies among the titles that have its rarest word, and its
    second rarest unless that one is common. That finds every copy whose words include
    the other's ("Invitation: X" and "X"), and near-identical ones with a word spelled
    differently; copies worded differently at the same place are found by the place."""
    frequency = Counter(chain.from_iterable(map(attrgetter("key_words"), titles)))
    common = _COMMON * len(titles)
    ranked = sorted(frequency, key=lambda w: (frequency[w], w))
    rarest_first = {w: r for r, w in enumerate(ranked)}.__getitem__
    # the words that are not common rank before every common one, so a title's probes
    # are among its rare words when it has any: ranking just those (mostly one: no sort)
    # rather than sorting all its words takes half the time
    rare = {w for w in ranked if frequency[w] <= common}
    distinct = list(dict.fromkeys(titles))  # in the order they lie in memory, unlike a set
    for title in distinct:
        words = title.key_words & rare
        if len(words) > 1:
            title.probes = tuple(sorted(words, key=rarest_first)[:2])
        elif words:
            title.probes = tuple(words)
        elif title.key_words:  # only common words: it looks by the least common one
            title.probes = (min(title.key_words, key=rarest_first),)
        else:
            title.probes = ()
        title.rarest = title.probes[0] if title.probes else None
    probed = {word for title in distinct for word in title.probes}
    for title in distinct:
        title.indexed = title.key_words & probed


def _join_similar(
    items: list[Occurrence], sets: _Sets, settings: MergeSettings, sources: Mapping[str, Source]
) -> None:
    """Join copies alike in time, title and place. Copies meet in blocks of a title word
    that one of them looks for copies by (the timed ones within the window or whole hours
    apart, the all-day ones on their day), and in blocks of a place and a minute."""
    raw = list(dict.fromkeys(map(attrgetter("title"), items)))
    by_raw = dict(zip(raw, _titles(raw, sources.values()), strict=True))
    titles = [by_raw[o.title] for o in items]
    _choose_probes(titles)

    network_zone = zone(settings.network_zone)
    day_of: dict[int, int] = {}  # of the all-day ones: their local day
    at: list[int] = []  # seconds; 0 for all-day
    all_day: list[int] = []
    blocks: dict[str, list[int]] = defaultdict(list)  # timed, by the words they are found by
    located: list[int] = []  # timed, with a place
    for index, (occurrence, title) in enumerate(zip(items, titles, strict=True)):
        start = occurrence.start
        if occurrence.all_day:
            at.append(0)
            if isinstance(start, datetime):
                start = start.astimezone(network_zone)
            day_of[index] = start.toordinal()
            all_day.append(index)
        else:
            at.append(int(start.timestamp()) if isinstance(start, datetime) else 0)
            for word in title.indexed:
                blocks[word].append(index)
            if occurrence.location:
                located.append(index)
    source_of = list(map(attrgetter("source_id"), items))
    find, union = sets.find, sets.union
    ratio = fuzz.token_set_ratio
    tried: set[tuple[int, int]] = set()

    def check(i: int, j: int, threshold: float) -> None:
        """Join i and j when they are alike: their places agree, their titles are alike."""
        if source_of[i] == source_of[j] or find(i) == find(j):
            return
        pair = (i, j) if i < j else (j, i)
        if pair in tried:
            return
        a, b = items[i], items[j]
        title_a, title_b = titles[i], titles[j]
        place = _place_agreement(a.location, b.location) if a.location and b.location else ""
        if place == "different":
            tried.add(pair)
            return
        if place == "same" and not a.all_day and a.start == b.start:
            # the same house at the same minute: co-hosts word (or translate) titles freely
            threshold = min(threshold, _SAME_PLACE_THRESHOLD)
        elif not title_a.words <= title_b.words and not title_b.words <= title_a.words:
            # each has a word the other lacks ("for begyndere" / "for øvede"): parallel
            # sessions, unless the titles are near-identical
            threshold = max(threshold, _PARALLEL_THRESHOLD)
        if ratio(title_a.text, title_b.text, score_cutoff=threshold):
            union(i, j)
        else:
            tried.add(pair)

    # timed copies: a sweep over the starts in each block. Within the window they meet
    # when either looks by the block's word; whole hours apart (a member's time-zone
    # mistake) when it is the rarest word of either, and only near-identical titles join.
    window = int(settings.window.total_seconds())
    reach = window + 3600 * settings.max_zone_shift
    starts_of: dict[str, list[int]] = {}  # the starts of each block, in order
    for word, block in blocks.items():
        # filled in the order of the occurrences, where they lie in memory, and sorted
        # here: filling them in the order of the starts jumps about memory, 3x slower
        block.sort(key=at.__getitem__)
        starts = starts_of[word] = list(map(at.__getitem__, block))
        # most copies have no other within reach after them: the gap to the next start
        # (at C speed) leaves them out before the sweep, which sees the same pairs
        gaps = map(sub, starts[1:], starts)
        for position in [p for p, gap in enumerate(gaps) if gap <= reach]:
            i = block[position]
            title, begins = titles[i], starts[position]
            for other in range(position + 1, len(block)):
                j = block[other]
                gap = starts[other] - begins
                if gap > reach:
                    break
                if gap <= window:
                    if word in title.probes or word in titles[j].probes:
                        check(i, j, settings.title_threshold)
                elif gap % 3600 == 0 and word in (title.rarest, titles[j].rarest):
                    check(i, j, settings.strict_threshold)
    # the same place at the same minute, however the titles are worded
    by_place: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in located:
        for mark in _place_marks(items[i].location):
            by_place[(mark, at[i])].append(i)
    for block in by_place.values():
        for position, i in enumerate(block):
            for j in block[position + 1 :]:
                check(i, j, settings.title_threshold)
    # all-day copies: against the all-day and the timed copies of their local day
    whole_days: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in all_day:
        for word in titles[i].indexed:
            whole_days[(word, day_of[i])].append(i)
    for i in all_day:
        title, day = titles[i], day_of[i]
        midnight = datetime.combine(date.fromordinal(day), time(), network_zone)
        today = (midnight.timestamp(), (midnight + timedelta(days=1)).timestamp())
        for word in title.indexed:
            for j in whole_days[(word, day)]:
                if j > i and (word in title.probes or word in titles[j].probes):
                    check(i, j, settings.title_threshold)
            block, starts = blocks.get(word, []), starts_of.get(word, [])
            first, last = bisect_left(starts, today[0]), bisect_left(starts, today[1])
            for j in block[first:last]:
                if word in title.probes or word in titles[j].probes:
                    check(i, j, settings.strict_threshold)


def _place_marks(location: str) -> set[str]:
    """What a place is looked up by: its postcodes and the first word of its name."""
    if not location:
        return set()
    marks = set(_POSTCODE.findall(location))
    name = normalised_title(location.split(",")[0]).split()
    if name and len(name[0]) > 2:
        marks.add(name[0])
    return marks


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


def _titles(titles: Sequence[str], sources: Iterable[Source]) -> list[_Title]:
    """Titles as merging compares them: normalised, without the names of member
    organisations ("Klimacafé hos Grøn Omstilling"), Danish event words in English."""
    names = _name_index(sources)
    comparable = []
    for text in normalised_titles(titles):
        words = text.split()
        if not names.keys().isdisjoint(words):
            named = text
            for word in set(words):
                for name in names.get(word, ()):
                    if name in named:
                        named = named.replace(name, " ")
            words = named.split() or words
            text = " ".join(words)
        if not _GLOSSARY.keys().isdisjoint(words):
            # an entry may be words ("sprogcafe" is "language cafe")
            text = " ".join(map(_GLOSSARY.get, words, words))
            words = text.split()
        comparable.append(_Title(text, words))
    return comparable


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
    members: Sequence[Occurrence],
    member_identities: Sequence[str],
    known: Mapping[str, str],
    rank: Mapping[str, int],
    by_id: Mapping[str, Source],
    sites: Mapping[str, str | None],
) -> MergedEvent:
    """One event from its members' copies: the owner's version wins (the member whose
    homepage is the event's site, else the first in the configuration); organisers and
    categories are the union; it is cancelled only when every member says so.

    Its id is the one the store already gave any of its identities, else one derived from
    the smallest, so it survives restarts and the first publisher leaving."""
    if len(members) == 1:  # most events: the same as below, without the work
        first = members[0]
        identities = tuple(member_identities)
        eid = known.get(identities[0]) or event_id(*identities[0].split("\x1f"))
        source = by_id[first.source_id]
        source_ids, organisers, cancelled_by = (first.source_id,), (source.name,), ()
        categories = first.categories + source.categories
        if len(categories) > 1:
            categories = _categories(categories)
        url, location, removed = first.url, first.location, first.removed_at is not None
        keys, copies = (first.key,), ((first.source_id, first.title, first.url),)
    else:
        identities = tuple(sorted(set(member_identities)))
        remembered = sorted({known[i] for i in identities if i in known})
        eid = remembered[0] if remembered else event_id(*identities[0].split("\x1f"))
        members = sorted(
            members, key=lambda o: (not _owns(sites[o.source_id], o.url), rank[o.source_id], o.key)
        )
        gone = (Status.CANCELLED, Status.POSTPONED)
        live = [o for o in members if o.status not in gone]
        # a merge never makes an event read as cancelled while a member still lists it
        first = live[0] if live else members[0]
        source_ids = tuple(sorted({o.source_id for o in members}, key=rank.__getitem__))
        organisers = tuple(by_id[s].name for s in source_ids)
        cancelled_by = (
            tuple(dict.fromkeys(by_id[o.source_id].name for o in members if o.status in gone))
            if live
            else ()
        )
        categories = _categories(
            c for o in members for c in o.categories + by_id[o.source_id].categories
        )
        url = first.url or next((o.url for o in members if o.url), None)
        location = first.location or next((o.location for o in members if o.location), "")
        removed = all(o.removed_at is not None for o in members)
        keys = tuple(o.key for o in members)
        copies = tuple((o.source_id, o.title, o.url) for o in members)
    # an override that moved one date of a series: moved from the series' slot
    previous = None
    if first.recurrence_id and first.recurrence_id != _iso(first.start):
        previous = from_iso(first.recurrence_id)
    # what subscribers see changes with the owner's copy (its fingerprint covers its
    # title, times, text, place, status and categories) and with what the merge adds
    content = (
        eid,
        first.recurrence_id,
        first.fingerprint or occurrence_fingerprint(first),
        url,
        location,
        categories,
        organisers,
        source_ids,
        cancelled_by,
        removed,
    )
    return MergedEvent(
        id=eid,
        uid=first.uid,
        title=first.title,
        start=first.start,
        end=first.end,
        all_day=first.all_day,
        tzid=first.tzid,
        description=first.description,
        url=url,
        location=location,
        status=first.status,
        categories=categories,
        organisers=organisers,
        source_ids=source_ids,
        members=keys,
        fingerprint=hashlib.sha256(repr(content).encode()).hexdigest()[:32],
        removed=removed,
        identities=identities,
        cancelled_by=cancelled_by,
        copies=copies,
        previous_start=previous,
    )


#: series' starts repeat (weekly, at the hour): their ISO forms are worth keeping
_iso = lru_cache(maxsize=65536)(iso)


def _categories(names: Iterable[str]) -> tuple[str, ...]:
    """Each category once, ignoring case: the first spelling seen."""
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.casefold(), name)
    return tuple(seen.values())


def _owns(site: str | None, url: str | None) -> bool:
    return bool(site) and bool(url) and _site(url) == site


def _site(url: str | None) -> str | None:
    if not url:
        return None
    return urlsplit(url).netloc.lower().removeprefix("www.") or None
