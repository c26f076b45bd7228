"""The pages' words come from the gettext catalogue (locale/da/LC_MESSAGES/pages.po), and the
labels the calendar and the feed share with the pages come from it in each of the network's
languages, as they always read."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from babel.messages.pofile import read_po

from aggregator.model import Network
from aggregator.render.text import LABELS, label, short_when
from tests.conftest import ROOT

PAGES = ROOT / "aggregator" / "locale" / "da" / "LC_MESSAGES" / "pages.po"


def _script():
    """scripts/translations.py (what `make translations` runs), as a module."""
    spec = importlib.util.spec_from_file_location("translations", ROOT / "scripts/translations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRANSLATIONS = _script()


def catalogue():
    with PAGES.open("rb") as po:
        return read_po(po, locale="da", domain="pages")


def used() -> dict[tuple[str | None, str], str]:
    """(context, msgid) -> where, for every word the code and the templates use: Babel's
    extraction with babel.cfg, as `make translations` runs it."""
    found = TRANSLATIONS.extract("pages")
    return {(m.context, m.id): str(m.locations[0][0]) for m in found if m.id}


def test_extraction_finds_words_in_the_templates_and_in_the_code():
    found = used()
    assert (None, "Member sources") in found  # a template
    assert (None, "Cancelled") in found  # render/text.py
    assert ("time of day", "{time}") in found  # render/dates.py
    assert ("fetch outcome", "not modified") in found  # render/sources.py
    assert len(found) > 80


def test_every_word_the_pages_use_has_a_danish_translation():
    danish = catalogue()
    missing = []
    for (context, msgid), where in sorted(used().items(), key=str):
        message = danish.get(msgid, context)
        if message is None or not message.string or message.fuzzy:
            missing.append(f"{where}: {msgid!r} ({context or 'no context'})")
    assert not missing, "untranslated (run `make translations`, then translate):\n" + "\n".join(
        missing
    )


def test_the_catalogue_holds_only_words_in_use():
    kept = {(m.context, m.id) for m in catalogue() if m.id}
    assert kept == set(used()), "run `make translations`"
    assert not catalogue().obsolete


def test_a_translation_keeps_the_placeholders():
    for message in catalogue():
        if message.id:
            assert _fields(message.string) == _fields(message.id), message.id


def test_make_translations_changes_nothing_on_an_up_to_date_catalogue():
    before = PAGES.read_bytes()
    template = TRANSLATIONS.extract("pages")
    assert TRANSLATIONS.updated(before, template, "da") == before


def _fields(text: str) -> set[str]:
    return set(re.findall(r"\{(\w*)\}", text))


# -- the labels of the calendar and the feed, in every language of the network ----------------


@pytest.mark.parametrize(
    ("languages", "key", "expected"),
    [
        (("da", "en"), "cancelled", "Aflyst / Cancelled"),
        (("en", "da"), "cancelled", "Cancelled / Aflyst"),
        (("da", "en"), "moved_from", "Flyttet fra / Moved from"),
        (("da", "en"), "removed", "fjernet af arrangøren / removed by the organiser"),
        (("da", "en"), "added", "Ny / New"),
        (("da",), "postponed", "Udsat"),
        (("en",), "rescheduled", "Moved"),
        # a language without a catalogue adds nothing, and English stands in when none is left
        (("en", "de", "da"), "cancelled_by", "Cancelled by / Aflyst hos"),
        (("de", "da"), "restored", "Genoptaget"),
        (("de",), "updated", "Updated"),
    ],
)
def test_a_label_is_said_in_each_of_the_networks_languages(languages, key, expected):
    assert label(Network(name="N", languages=languages), key) == expected


def test_every_label_is_translated():
    danish = catalogue()
    for key, msgid in LABELS.items():
        assert danish.get(msgid) is not None and danish.get(msgid).string, key


NETWORK = Network(name="N", timezone="Europe/Copenhagen", languages=("da", "en"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2027, 1, 28, 12, tzinfo=UTC), "Thu 28 Jan 13:00"),
        (datetime(2027, 9, 9, 8, 30, tzinfo=UTC), "Thu 9 Sep 10:30"),  # 'Sep', not en_GB's 'Sept'
        (datetime(2027, 5, 1, 22, 5, tzinfo=UTC), "Sun 2 May 00:05"),  # the network's day
        (date(2027, 6, 12), "Sat 12 Jun"),
    ],
)
def test_short_when_writes_english_dates_when_the_network_speaks_english(value, expected):
    assert short_when(value, NETWORK) == expected
    assert short_when(value, replace(NETWORK, languages=("en",))) == expected


def test_a_danish_only_network_writes_dates_as_its_page_does():
    danish = replace(NETWORK, languages=("da",))
    assert short_when(datetime(2027, 1, 28, 12, tzinfo=UTC), danish) == "tors. 28. jan. kl. 13.00"
    assert short_when(date(2027, 6, 12), danish) == "lør. 12. jun."
