"""The pages as HTML: a view model (render.views, render.index, render.sources) -> a Jinja2
template in templates/. Pure: no I/O but reading the templates, no clock read.

One Jinja2 environment per language, with the pages catalogue installed (jinja2.ext.i18n):
a template says `{{ _("Member sources") }}` and reads it in the page's language. The
callables are the plain (not "newstyle") ones, so a translation is text like any other and
autoescape escapes it; no template marks feed text safe.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from functools import cache

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from aggregator.i18n import translations
from aggregator.model import ChangeRecord, NetworkEvent, Settings, SourceState
from aggregator.render.index import index_page
from aggregator.render.sources import SourceHealth, source_page, sources_page
from aggregator.render.views import Page, check_page, event_page
from aggregator.selection import Selection


@cache
def environment(lang: str) -> Environment:
    """The templates, speaking `lang` (the words as written when it has no catalogue)."""
    env = Environment(
        loader=PackageLoader("aggregator", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(lang, "pages"), newstyle=False)  # type: ignore[attr-defined]
    return env


def render(template: str, page: Page) -> str:
    """`page` through `template`, in the page's language; its fields are the names there."""
    values = {f.name: getattr(page, f.name) for f in fields(page)}
    return environment(page.lang).get_template(template).render(values)


def _style_hash() -> str:
    """The CSP source of base.html's one <style> element: 'sha256-<base64>' of its text, so the
    Content-Security-Policy allows that style and no other inline one (CSP3 section 8.4).
    The element holds no Jinja, so its source is what the browser hashes."""
    env = environment("en")
    source = env.loader.get_source(env, "base.html")[0]  # type: ignore[union-attr]
    (style,) = re.findall(r"<style>(.*?)</style>", source, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


#: for the pages' style-src
STYLE_HASH = _style_hash()


def render_index(
    events: Iterable[NetworkEvent],
    settings: Settings,
    *,
    lang: str,
    now: datetime,
    filters: Mapping[str, Sequence[str]] | Selection | None = None,
    embed: bool = False,
    month: str | None = None,
    q: str = "",
    saved: str | None = None,
    after: str | None = None,
) -> str:
    """The page at /: the coming weeks or `month` ("YYYY-MM") of the events the filter and the
    search `q` find, by month; filters, month links, subscribe block (index_page, which says
    what `events` must hold and what `saved` is). Raises ValueError for a malformed month."""
    page = index_page(
        events,
        settings,
        lang=lang,
        now=now,
        filters=filters,
        embed=embed,
        month=month,
        q=q,
        saved=saved,
        after=after,
    )
    return render("index.html", page)


def render_event_page(
    item: NetworkEvent, settings: Settings, history: Sequence[ChangeRecord] = (), *, lang: str
) -> str:
    """One event's page (/events/{id}): details, member copies, history (the store's change
    records for this event, oldest first, as Store.event_history() gives them)."""
    return render("event.html", event_page(item.event, settings, history, lang=lang))


def render_sources(settings: Settings, states: Mapping[str, SourceState], *, lang: str) -> str:
    """/sources: each member source's state in words, for the member organisations."""
    return render("sources.html", sources_page(settings, states, lang=lang))


def render_source(report: SourceHealth, settings: Settings, *, lang: str, now: datetime) -> str:
    """/sources/{id}: one source's state, what was read and skipped (each with a hint to fix
    it), what was merged with whom, its fetches and their timeline."""
    return render("source.html", source_page(report, settings, lang=lang, now=now))


def render_check(
    settings: Settings, report: object | None = None, *, lang: str, refused: str = ""
) -> str:
    """/check: the form, and the report of a check (a check.CheckReport) or why it was
    refused."""
    return render("check.html", check_page(settings, report, lang=lang, refused=refused))
