"""What a member reads about its feed, as data: a stable code, the words, the detail.

Every problem's words come from one template per code (its msgid in the ``problems``
gettext domain), filled from the detail; so a page says it in its own language, and a hint
is found by the code, however the words are phrased. Pure.
"""

from __future__ import annotations

from aggregator.i18n import N_, gettext_in
from aggregator.model import Problem

__all__ = ["TEMPLATES", "Problem", "problem", "say"]

#: code -> the English words with {placeholders}; a code is never reused or renamed
TEMPLATES: dict[str, str] = {
    "text": N_("{words}"),
}


def problem(code: str, **detail: object) -> Problem:
    """The problem `code`, its words made from the template and `detail`."""
    values = tuple((name, str(value)) for name, value in detail.items())
    return Problem(code, TEMPLATES[code].format(**dict(values)), values)


def say(item: Problem | str, lang: str) -> str:
    """The problem in `lang` (its English words when the catalogue has no translation)."""
    if isinstance(item, str):
        return item
    template = TEMPLATES.get(item.code)
    if template is None or item.code == "text":
        return item.words
    try:
        return gettext_in(lang, "problems")(template).format(**dict(item.detail))
    except (KeyError, IndexError, ValueError):  # a translation that lost a placeholder
        return item.words
