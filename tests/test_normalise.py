"""normalise.py: comparing forms of titles."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.normalise import normalised_title, normalised_titles, title_status


def _reference(title: str) -> str:
    """The plain definition: NFKD, combining marks off, ø æ å spelled out."""
    _, rest = title_status(title)
    folded = unicodedata.normalize("NFKD", rest.casefold())
    plain = "".join(ch for ch in folded if not unicodedata.combining(ch))
    plain = plain.replace("ø", "o").replace("æ", "ae").replace("å", "a")
    return " ".join(re.findall(r"\w+", plain))


@settings(max_examples=500)
@given(st.text(alphabet=st.characters(max_codepoint=0x3FF), max_size=40))
def test_the_fast_fold_equals_the_plain_definition(title):
    assert normalised_title(title) == _reference(title)


def test_danish_letters_and_accents_fold():
    assert normalised_title("Aflyst: Sprogcafé på Nørrebro – ÆBLEFEST") == (
        "sprogcafe pa norrebro aeblefest"
    )


@given(st.lists(st.text(alphabet=st.characters(max_codepoint=0x3FF), max_size=30), max_size=8))
def test_titles_normalised_together_are_each_normalised_alone(titles):
    assert normalised_titles(titles) == [normalised_title(t) for t in titles]
