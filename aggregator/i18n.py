"""Translations: gettext catalogues (Babel), one domain per audience.

``pages``: the words of the pages; ``problems``: what a member reads about its feed.
The catalogues are the ``.po`` files in ``locale/<lang>/LC_MESSAGES/`` (``make translations``
extracts and updates them); they are compiled in memory when first used, so no built file
is kept in the repository. English is the source language: its words are the msgids.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE = Path(__file__).parent / "locale"
DOMAINS = ("pages", "problems")


@cache
def translations(lang: str, domain: str = "pages") -> gettext.NullTranslations:
    """The catalogue of `domain` in `lang`; the words as written (English) when there is none."""
    path = LOCALE / lang / "LC_MESSAGES" / f"{domain}.po"
    if not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=lang, domain=domain)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=domain)


def gettext_in(lang: str, domain: str = "pages"):
    """`gettext` for one language and domain: ``_ = gettext_in("da"); _("Cancelled")``."""
    return translations(lang, domain).gettext


def N_(message: str) -> str:
    """Marks words for extraction that are translated later, where they are shown."""
    return message
