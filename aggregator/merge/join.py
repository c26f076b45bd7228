"""Which occurrences are copies of one event: joined into sets (union-find, so the order
of the occurrences does not matter) by identity, by address, and by likeness in time,
title and place."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from operator import attrgetter, sub
from typing import NamedTuple
from urllib.parse import urlsplit

from rapidfuzz import fuzz

from aggregator.merge.places import place_agreement, place_marks
from aggregator.merge.titles import Title, Vocabulary, choose_probes, comparable_titles
from aggregator.model import MergeSettings, Occurrence, Source
from aggregator.normalise import instant, zone

#: title likeness needed when each title has a word the other lacks
_PARALLEL_THRESHOLD = 90.0

#: title likeness enough for copies at the same place and the same minute
_SAME_PLACE_THRESHOLD = 45.0

#: joins i and j when they are alike enough for the threshold given
Check = Callable[[int, int, float], None]


class Sets:
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


def join_identical(items: list[Occurrence], identities: list[str], sets: Sets) -> None:
    """Join copies with the same UID (and recurrence id), or, from two sources, the same
    event address within a day."""
    first: dict[tuple[str, str], int] = {}
    # every copy with the address, by day: whether two are joined depends on them alone,
    # never on which came first (an incremental merge relies on it)
    by_url: dict[tuple[str, date], list[int]] = defaultdict(list)
    for index, occurrence in enumerate(items):
        uid, _, rid = identities[index].partition("\x1f")
        other = first.setdefault((uid.strip().lower(), rid), index)
        if other != index:
            sets.union(other, index)
        url = occurrence.url and url_key(occurrence.url)
        if url:
            day = _local_day(occurrence, "UTC")
            for near in (day - timedelta(days=1), day, day + timedelta(days=1)):
                for other in by_url.get((url, near), ()):
                    if items[other].source_id != occurrence.source_id:
                        sets.union(other, index)
            by_url[(url, day)].append(index)


def join_similar(
    items: list[Occurrence],
    sets: Sets,
    settings: MergeSettings,
    sources: Mapping[str, Source],
    vocabulary: Vocabulary | None = None,
) -> None:
    """Join copies alike in time, title and place. Copies meet in blocks of a title word
    that one of them looks for copies by (the timed ones within the window or whole hours
    apart, the all-day ones on their day), and in blocks of a place and a minute.

    Which words are rare comes from `vocabulary` (the whole network's) when given, else
    from `items`."""
    titles = titles_of(items, sources.values())
    choose_probes(titles, vocabulary)
    network_zone = zone(settings.network_zone)
    index = _index(items, titles, network_zone)
    check = _checker(items, titles, sets)
    starts_of = _join_timed(index, titles, check, settings)
    _join_same_place(items, index, check, settings.title_threshold)
    _join_all_day(index, titles, starts_of, check, settings, network_zone)


def titles_of(items: Sequence[Occurrence], sources: Iterable[Source]) -> list[Title]:
    """Each occurrence's title as merging compares it (one object per distinct title)."""
    raw = list(dict.fromkeys(map(attrgetter("title"), items)))
    by_raw = dict(zip(raw, comparable_titles(raw, sources), strict=True))
    return [by_raw[o.title] for o in items]


class _Index(NamedTuple):
    """Where the copies are looked up, by their index in the occurrences."""

    #: each one's start in seconds; 0 for all-day
    at: list[int]
    #: of the all-day ones: their local day (an ordinal)
    day_of: dict[int, int]
    all_day: list[int]
    #: the timed ones, by the words they are found by
    blocks: dict[str, list[int]]
    #: the timed ones with a place
    located: list[int]


def _index(items: list[Occurrence], titles: list[Title], network_zone: tzinfo | None) -> _Index:
    day_of: dict[int, int] = {}
    at: list[int] = []
    all_day: list[int] = []
    blocks: dict[str, list[int]] = defaultdict(list)
    located: list[int] = []
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
    return _Index(at, day_of, all_day, blocks, located)


def _checker(items: list[Occurrence], titles: list[Title], sets: Sets) -> Check:
    """The comparison of two copies, each pair once (a closure: called for every pair that
    meets, it keeps what it needs in local cells)."""
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
        place = place_agreement(a.location, b.location) if a.location and b.location else ""
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

    return check


def _join_timed(
    index: _Index, titles: list[Title], check: Check, settings: MergeSettings
) -> dict[str, list[int]]:
    """Timed copies: a sweep over the starts in each block. Within the window they meet
    when either looks by the block's word; whole hours apart (a member's time-zone
    mistake) when it is the rarest word of either, and only near-identical titles join.
    Returns the starts of each block, in order."""
    at = index.at
    window = int(settings.window.total_seconds())
    reach = window + 3600 * settings.max_zone_shift
    starts_of: dict[str, list[int]] = {}
    for word, block in index.blocks.items():
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
    return starts_of


def _join_same_place(
    items: list[Occurrence], index: _Index, check: Check, threshold: float
) -> None:
    """The same place at the same minute, however the titles are worded."""
    by_place: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in index.located:
        for mark in place_marks(items[i].location):
            by_place[(mark, index.at[i])].append(i)
    for block in by_place.values():
        for position, i in enumerate(block):
            for j in block[position + 1 :]:
                check(i, j, threshold)


def _join_all_day(
    index: _Index,
    titles: list[Title],
    starts_of: Mapping[str, list[int]],
    check: Check,
    settings: MergeSettings,
    network_zone: tzinfo | None,
) -> None:
    """All-day copies: against the all-day and the timed copies of their local day."""
    day_of, blocks = index.day_of, index.blocks
    whole_days: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in index.all_day:
        for word in titles[i].indexed:
            whole_days[(word, day_of[i])].append(i)
    for i in index.all_day:
        title, day = titles[i], day_of[i]
        midnight = instant(date.fromordinal(day), network_zone)
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


def _local_day(occurrence: Occurrence, zone_name: str) -> date:
    if isinstance(occurrence.start, datetime):
        return occurrence.start.astimezone(zone(zone_name)).date()
    return occurrence.start


def url_key(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    path = parts.path.rstrip("/")
    if path.count("/") < 1 or len(path) < 2:
        return None  # a site's front page is no event's address
    return f"{parts.netloc.lower().removeprefix('www.')}{path}"
