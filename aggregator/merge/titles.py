"""Titles as merging compares them: normalised, without member names, Danish event words in
English; and the words each title looks for its copies by."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from itertools import chain
from operator import attrgetter

from aggregator.model import Source
from aggregator.normalise import normalised_title, normalised_titles

#: words too common to say two titles are about the same thing
_STOP = frozenset(
    "om i for og med til på af en et den det de the of and in at on a an to with by from".split()
)
#: a title word in more than this share of all titles is common: it is not looked up by
#: itself (at 230,000 occurrences, "workshop" would meet every workshop of the hour)
_COMMON = 0.01


class Title:
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
        #: set by choose_probes: the words it looks for copies by (rarest first), the
        #: rarest one, and the words it is found by, which some title looks by
        self.probes: tuple[str, ...] = ()
        self.rarest: str | None = None
        self.indexed: Set[str] = frozenset()


class Vocabulary:
    """How often each title word occurs among all occurrences of the network: what makes a
    word rare. A full merge counts it from the titles it merges; an incremental one is given
    the counts the store keeps for the whole network, so a title chooses the same probes
    whichever part of the network is merged."""

    __slots__ = ("frequency", "total")

    def __init__(self, frequency: Mapping[str, int], total: int) -> None:
        #: word -> the number of occurrences whose title has it (as a key word)
        self.frequency = frequency
        #: the number of occurrences counted
        self.total = total

    @classmethod
    def of(cls, titles: Sequence[Title]) -> Vocabulary:
        """The vocabulary of these titles (one per occurrence)."""
        return cls(Counter(chain.from_iterable(map(attrgetter("key_words"), titles))), len(titles))

    def probes(self, key_words: Set[str]) -> tuple[str, ...]:
        """The words a title with these key words looks for its copies by, rarest first:
        its rarest word, and its second rarest unless that one is common; a title of common
        words only looks by the least common one."""
        frequency = self.frequency
        common = common_count(self.total)
        words = [w for w in key_words if frequency.get(w, 0) <= common]
        if len(words) > 1:
            words.sort(key=lambda w: (frequency.get(w, 0), w))
            return tuple(words[:2])
        if words:
            return (words[0],)
        if key_words:
            return (min(key_words, key=lambda w: (frequency.get(w, 0), w)),)
        return ()


def common_count(total: int) -> float:
    """The count above which a word is common among `total` occurrences."""
    return _COMMON * total


def choose_probes(titles: Sequence[Title], vocabulary: Vocabulary | None = None) -> None:
    """Each title looks for its copies among the titles that have its rarest word, and its
    second rarest unless that one is common. That finds every copy whose words include
    the other's ("Invitation: X" and "X"), and near-identical ones with a word spelled
    differently; copies worded differently at the same place are found by the place.

    Rarity is counted over `titles`, or taken from `vocabulary` (the whole network's, when
    only part of it is merged). A title is found by the words some title here looks by."""
    vocabulary = vocabulary or Vocabulary.of(titles)
    distinct = list(dict.fromkeys(titles))  # in the order they lie in memory, unlike a set
    chosen: dict[frozenset[str], tuple[str, ...]] = {}
    for title in distinct:
        words = frozenset(title.key_words)
        probes = chosen.get(words)
        if probes is None:
            probes = chosen[words] = vocabulary.probes(words)
        title.probes = probes
        title.rarest = probes[0] if probes else None
    probed = {word for title in distinct for word in title.probes}
    for title in distinct:
        title.indexed = title.key_words & probed


def _name_index(sources: Iterable[Source]) -> dict[str, list[str]]:
    """Member names (normalised), by their first word, for taking them out of titles."""
    index: dict[str, list[str]] = defaultdict(list)
    for source in sources:
        name = normalised_title(source.name)
        if name:
            index[name.split()[0]].append(name)
    return index


def comparable_titles(titles: Sequence[str], sources: Iterable[Source]) -> list[Title]:
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
        comparable.append(Title(text, words))
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
