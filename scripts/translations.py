"""Bring the gettext catalogues up to date with the words in the code (`make translations`).

    .venv/bin/python scripts/translations.py [--check]

For each domain, the msgids are extracted as `pybabel extract` does (babel.cfg: the pages'
words, from render/*.py and the templates; babel-problems.cfg: problems.py's N_ templates),
and every aggregator/locale/<lang>/LC_MESSAGES/<domain>.po is updated as `pybabel update
--no-fuzzy-matching --ignore-pot-creation-date` does: a new word comes in untranslated, a gone
one is kept as obsolete (#~), translations stay. A catalogue is written only when it changes,
so a second run changes nothing. The notes a catalogue gives a message (#. code: ...) stay
when the extraction has none. Nothing is compiled: aggregator/i18n.py compiles the .po files
in memory. --check changes nothing and exits 1 when a catalogue would change.
"""

from __future__ import annotations

import argparse
import sys
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "aggregator" / "locale"
#: domain -> its mapping file and the keywords that mark its words
DOMAINS = {
    "pages": ("babel.cfg", DEFAULT_KEYWORDS),
    "problems": ("babel-problems.cfg", {"N_": None}),
}


def extract(domain: str) -> Catalog:
    """The domain's msgids as they are in the code now (a template, as a .pot holds)."""
    mapping, keywords = DOMAINS[domain]
    with (ROOT / mapping).open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    template = Catalog(domain=domain)
    found = extract_from_dir(
        ROOT,
        method_map,
        options_map,
        keywords=keywords,
        comment_tags=("Translators:",),
        strip_comment_tags=True,
        directory_filter=_in_package,
    )
    for filename, lineno, message, comments, context in found:
        template.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return template


def _in_package(path: str) -> bool:
    """Walk the repository itself and the package; not .venv, tests or node_modules."""
    relative = Path(path).resolve().relative_to(ROOT)
    return not relative.parts or relative.parts[0] == "aggregator"


def updated(po: bytes, template: Catalog, lang: str) -> bytes:
    """`po` (a catalogue) following `template`: `pybabel update` without fuzzy guesses."""
    catalog = read_po(BytesIO(po), locale=lang)
    notes = {message.id: message.auto_comments for message in catalog if message.id}
    catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
    for message in catalog:
        if message.id and not message.auto_comments:
            message.auto_comments = list(notes.get(message.id, ()))
    out = BytesIO()
    write_po(out, catalog, no_location=True, width=100)
    # the header as written: write_po rewraps its comment, drops indents and stamps the
    # Babel version it ran with, so another Babel would change an up-to-date catalogue
    return _header(po) + out.getvalue()[len(_header(out.getvalue())) :]


def _header(po: bytes) -> bytes:
    """The comment lines a catalogue starts with and its header entry (msgid ""), up to the
    blank line after it."""
    end = po.find(b"\n\n", po.find(b'msgid ""'))
    return po if end < 0 else po[: end + 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = parser.parse_args()
    stale = []
    for domain in DOMAINS:
        template = extract(domain)
        for path in sorted(LOCALE.glob(f"*/LC_MESSAGES/{domain}.po")):
            before = path.read_bytes()
            after = updated(before, template, path.parent.parent.name)
            if after == before:
                continue
            stale.append(path)
            if not args.check:
                path.write_bytes(after)
            print(f"{'stale' if args.check else 'updated'}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
