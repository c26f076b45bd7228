"""Problems: a stable code, the words (English, as they always were) and the detail; the
words in a page's language from the ``problems`` catalogue; hints by code."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from aggregator import problems
from aggregator.errors import ParseError
from aggregator.guard import address_kind
from aggregator.model import Limits, Problem
from aggregator.parse import decode_body
from aggregator.parse.feeds import item_events, read_feed
from aggregator.parse.ical import parse_calendar
from aggregator.parse.warnings import MAX_WARNINGS, Warnings
from aggregator.problems import CHANGE_COUNTS, PHRASES, TEMPLATES, problem, say
from aggregator.render.health import HINTS, hint
from tests.conftest import CORPUS, DATA, ROOT, source

CATALOGUE = ROOT / "aggregator" / "locale" / "da" / "LC_MESSAGES" / "problems.po"
NOW = datetime(2026, 1, 15, 12, tzinfo=UTC)
#: the codes whose hints are new: no words ever had one
FETCH_HINTS = {
    "dns-failed",
    "connect-refused",
    "timeout",
    "too-big",
    "too-big-decompressed",
    "file-too-big",
    "http-check-address",
}


def fields(template: str) -> set[str]:
    """The names of a template's {placeholders}."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def neutral(code: str) -> Problem:
    """The problem `code` with a plain value for each placeholder."""
    return problem(code, **{name: "2" for name in fields(TEMPLATES[code])})


def catalogue() -> dict[str, str]:
    with CATALOGUE.open("rb") as po:
        return {m.id: m.string for m in read_po(po, locale="da") if m.id}


# -- the catalogue --------------------------------------------------------------------------


def test_the_danish_catalogue_has_exactly_the_templates_and_phrases():
    # a template added, changed or removed without the catalogue following fails here
    assert set(catalogue()) == set(TEMPLATES.values()) | set(PHRASES) | set(CHANGE_COUNTS.values())


def test_every_template_is_translated_with_the_same_placeholders():
    danish = catalogue()
    for code, template in TEMPLATES.items():
        assert danish[template], code
        assert fields(danish[template]) == fields(template), code
    for phrase in PHRASES:
        assert danish[phrase] and not fields(danish[phrase]), phrase


def test_extraction_finds_every_template_and_phrase():
    # what `pybabel extract -F babel-problems.cfg -k N_ --no-default-keywords` finds
    with (ROOT / "babel-problems.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found = {
        message
        for _, _, message, _, _ in extract_from_dir(
            ROOT, method_map, options_map, keywords={"N_": None}
        )
    }
    assert found == set(TEMPLATES.values()) | set(PHRASES) | set(CHANGE_COUNTS.values())


# -- words in a language ----------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(TEMPLATES))
def test_a_problem_is_said_in_english_as_its_words_and_in_danish_from_the_catalogue(code):
    found = neutral(code)
    assert say(found, "en") == found.words == str(found)
    if code != "text":
        danish = catalogue()[TEMPLATES[code]]
        assert say(found, "da") == danish.format(**dict(found.detail))
        assert say(found, "da") != found.words or danish == TEMPLATES[code]


def test_what_was_read_and_the_kind_of_address_are_said_in_the_language_too():
    found = problem(
        "resolves-refused", host="x.org", address="10.0.0.1", kind=address_kind("10.0.0.1")
    )
    assert found.words == (
        "x.org resolves to 10.0.0.1, a private network address; only public addresses are read"
    )
    assert say(found, "da") == (
        "x.org peger på 10.0.0.1, en adresse på et privat netværk; kun offentlige adresser læses"
    )
    budget = problem("reader-died", what="its page")
    assert (
        say(budget, "da")
        == "læsningen af dens side stoppede læseren uventet; den blev sprunget over"
    )


@pytest.mark.parametrize(
    "address", ["224.0.0.1", "0.0.0.0", "127.0.0.1", "169.254.169.254", "10.0.0.1", "64:ff9b:1::1"]
)
def test_every_kind_of_refused_address_is_a_phrase_of_the_catalogue(address):
    assert address_kind(address) in PHRASES


def test_words_without_a_code_are_said_as_they_are():
    assert say("some words", "da") == "some words"
    assert say(Problem.text("some words"), "da") == "some words"


def test_a_problem_is_hashable_and_equal_by_code_words_and_detail():
    first = problem("no-end", title="Koncert")
    assert first == problem("no-end", title="Koncert") and len({first, first}) == 1
    assert first.detail == (("title", "Koncert"),)


# -- Warnings ---------------------------------------------------------------------------------


def test_warnings_keep_each_problem_once_by_its_words_and_wrap_plain_words():
    warnings = Warnings([problem("no-end", title="A"), "plain words"])
    warnings.add(problem("no-end", title="A"))
    warnings.add(Problem.text("event 'A' has no end time; shown as ending when it starts"))
    assert [w.code for w in warnings.result()] == ["no-end", "text"]


def test_the_more_line_is_a_problem_and_counts_when_read_again():
    cut = Warnings(f"w{n}" for n in range(MAX_WARNINGS + 5)).result()
    assert cut[-1] == problem("more-warnings", count=5)
    again = Warnings([*cut, "... and 7 more warnings"]).result()
    assert again[-1].words == "... and 12 more warnings"


# -- hints ------------------------------------------------------------------------------------


def test_rewording_a_template_keeps_its_hint(monkeypatch):
    before = hint(problem("no-end", title="Koncert"), "en")
    assert before == "Give the event an end time in your calendar program."
    monkeypatch.setitem(TEMPLATES, "no-end", "'{title}' stops when it starts")
    reworded = problem("no-end", title="Koncert")
    assert reworded.words == "'Koncert' stops when it starts"
    assert hint(reworded, "en") == before
    assert hint(reworded, "da") == "Giv begivenheden et sluttidspunkt i jeres kalenderprogram."
    # the words alone (as an older version stored them) no longer say it
    assert hint(reworded.words, "en") is None


def test_a_title_that_reads_like_a_problem_gets_no_hint():
    assert hint(problem("no-date", title="Floating market"), "en") is None


@pytest.mark.parametrize("code", sorted(TEMPLATES))
def test_hints_by_code_are_the_hints_the_words_always_had(code):
    found = neutral(code)
    by_words = hint(Problem.text(found.words), "en")
    if code in FETCH_HINTS:  # a fetch's failures have hints of their own now
        assert by_words is None and hint(found, "en") is not None
    else:
        assert hint(found, "en") == by_words


def test_old_stored_words_still_get_their_hint():
    assert hint("UID a@b is used by 3 events; kept one copy", "da") == (
        "Flere begivenheder deler ét UID; hver begivenhed skal have sit eget."
    )
    assert set(HINTS) <= set(TEMPLATES)


# -- what the corpus produces -------------------------------------------------------------------


def _calendar_codes(path: Path) -> set[str]:
    text, _ = decode_body(path.read_bytes())
    try:
        parsed = parse_calendar(
            text,
            url=str(path),
            source_id="corpus",
            floating_zone="Europe/Copenhagen",
            network_zone="Europe/Copenhagen",
            now=NOW,
            limits=Limits(),
        )
    except ParseError as e:
        return {e.problem.code}
    return {w.code for w in parsed.warnings}


def _feed_codes(path: Path) -> set[str]:
    try:
        items, read = read_feed(path.read_bytes(), None, url="https://x.org/f", zone_name="UTC")
    except ParseError as e:
        return {e.problem.code}
    parsed = item_events(
        items,
        {},
        source=source("corpus", "https://x.org/f"),
        zone_name="UTC",
        languages=("da", "en"),
        now=NOW,
        limits=Limits(),
    )
    return {w.code for w in (*read, *parsed.warnings)}


def _corpus() -> list[Path]:
    found = [*sorted(DATA.rglob("*.ics")), *sorted((DATA / "rss").glob("*.xml"))]
    if CORPUS.is_dir():
        found += [*sorted((CORPUS / "ics").glob("*")), *sorted((CORPUS / "feeds").glob("*"))]
    return [
        p for p in found if p.is_file() and p.suffix in (".ics", ".xml", ".rdf", ".atom", ".rss")
    ]


def test_every_warning_the_corpus_gives_has_a_known_code():
    codes: dict[str, set[str]] = {}
    for path in _corpus():
        read = _calendar_codes if path.suffix == ".ics" else _feed_codes
        for code in read(path):
            codes.setdefault(code, set()).add(path.name)
    assert codes  # the corpus does give warnings
    assert set(codes) <= set(TEMPLATES), set(codes) - set(TEMPLATES)
    assert "text" not in codes, codes.get("text")


def test_problems_module_has_no_duplicate_codes_and_codes_are_kebab_case():
    for code in TEMPLATES:
        assert code == code.lower() and " " not in code and "_" not in code
    assert problems.more_count(problem("more-warnings", count=3)) == 3
