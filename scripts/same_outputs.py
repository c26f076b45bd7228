"""Prove that a refactor left the outputs byte-identical.

    .venv/bin/python scripts/same_outputs.py BASE_REV [--keep DIR]

Checks BASE_REV out in a temporary git worktree ("before") and takes the current working
tree as "after". For each tree and each of two networks (the bundled demo, and every
iCalendar and RSS/Atom file of /work/shared/corpus), it refreshes four times on a fixed
clock (the demo's kulturhuset.ics is edited before the third; the fourth confirms what the
edit removed), then captures what the refreshes print, `aggregator export`, and the HTTP
endpoints (make_app on 127.0.0.1, the clock at the last refresh). Both trees run in the same
.venv, each importing its own `aggregator` (cwd and PYTHONPATH = the tree), in the same
temporary folder one after the other. The outputs are compared file by file after the
normalisations of normalisations() (printed when it runs); exit code 1 when any differ."""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
CORPUS = Path("/work/shared/corpus")
#: the refreshes; the HTTP outputs are read with the clock at the last one. The fourth
#: confirms the removal of what the edit took out of the feed (a removal waits for a second
#: good fetch)
CLOCK = (
    "2026-11-26T12:00:00+00:00",
    "2026-11-27T12:00:00+00:00",
    "2026-11-28T13:00:00+00:00",
    "2026-11-29T13:00:00+00:00",
)
#: the demo feed edited before the last refresh (see edit_feed)
EDITED_FEED = "examples/feeds/kulturhuset.ics"
#: events of /events.json whose pages are read
EVENT_PAGES = 20
#: lines of each differing output's diff shown
DIFF_LINES = 40
#: lines of a refresh's stderr shown (it is not compared: its log lines carry the time)
STDERR_LINES = 10

# Runs inside each tree (python -c, cwd = the tree): make_app with a fixed clock, no
# scheduler, on 127.0.0.1 at an ephemeral port; every answer is written as
# "status: ...\ncontent-type: ...\n\n" + the body, to a file named after the request path.
HTTP_RUNNER = r"""
import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from aiohttp.test_utils import TestClient, TestServer

from aggregator.config import load_config
from aggregator.web import make_app

config, out, when, pages = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
now = datetime.fromisoformat(when)
HTML = {"Accept": "text/html"}


async def main():
    app = make_app(load_config(config), clock=lambda: now, scheduler=False)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:

        async def get(path, headers=None):
            response = await client.get(
                path, headers={"Accept-Encoding": "identity", **(headers or {})}
            )
            body = await response.read()
            head = f"status: {response.status}\ncontent-type: {response.content_type}"
            charset = response.charset
            head += f"; charset={charset}\n\n" if charset else "\n\n"
            (out / quote(path, safe="?=&,.-_")).write_bytes(head.encode() + body)
            return json.loads(body) if response.status == 200 and path.endswith("json") else {}

        for path in (
            "/calendar.ics",
            "/calendar.ics?cancelled=prefix",
            "/calendar.ics?cancelled=hide",
            "/feed.atom",
            "/?lang=da",
            "/?lang=en",
            "/?embed=1",
        ):
            await get(path)
        sources = [s["id"] for s in (await get("/sources.json")).get("sources", [])]
        for lang in ("da", "en"):
            await get(f"/sources?lang={lang}", HTML)
        if sources:
            await get(f"/?source={sources[0]}")
        for source in sources:
            for lang in ("da", "en"):
                await get(f"/sources/{source}?lang={lang}", HTML)
            await get(f"/sources/{source}.json")
        events = [e["id"] for e in (await get("/events.json")).get("events", [])]
        for event in events[:pages]:
            for lang in ("da", "en"):
                await get(f"/events/{event}?lang={lang}", HTML)
            await get(f"/events/{event}.ics")
            await get(f"/events/{event}.json")


asyncio.run(main())
"""


class Normalisation:
    """One rewrite of what legitimately differs between runs, on the outputs whose path
    (relative to a side's capture folder) matches `where`."""

    def __init__(self, what: str, where: str, pattern: str, replacement: str) -> None:
        self.what = what
        self.where = where
        self.pattern = re.compile(pattern.encode())
        self.replacement = replacement.encode()
        self.count = 0

    def apply(self, name: str, data: bytes) -> bytes:
        if not fnmatch.fnmatchcase(name, self.where):
            return data
        data, n = self.pattern.subn(self.replacement, data)
        self.count += n
        return data


class ProgressOrder(Normalisation):
    """A refresh reads its sources concurrently and prints '[n/N] source: ...' as each one
    finishes, so their order (and so n) varies from run to run: sort those reports (a report
    runs to the next one, or to the summary line; an error may take several lines), hide n.
    A permutation: it can reorder what a refresh printed, never hide a change in it."""

    SUMMARY = re.compile(rb"^(\d+ of \d+ sources read|stopped \(SIGTERM\))")

    def __init__(self) -> None:
        super().__init__(
            "the order in which sources finish (read concurrently): the '[n/N] ...' reports "
            "of a refresh are sorted and n becomes <n>",
            "*/refresh-*.txt",
            r"^\[\d+/(\d+)\] ",
            r"[<n>/\1] ",
        )

    def apply(self, name: str, data: bytes) -> bytes:
        if not fnmatch.fnmatchcase(name, self.where):
            return data
        lines = data.split(b"\n")
        starts = [i for i, line in enumerate(lines) if self.pattern.match(line)]
        if not starts:
            return data
        end = next(
            (i for i in range(starts[-1], len(lines)) if self.SUMMARY.match(lines[i])),
            len(lines),
        )
        reports = sorted(
            [self.pattern.sub(self.replacement, lines[a]), *lines[a + 1 : b]]
            for a, b in zip(starts, [*starts[1:], end], strict=True)
        )
        self.count += len(reports)
        ordered = [line for report in reports for line in report]
        return b"\n".join(lines[: starts[0]] + ordered + lines[end:])


def normalisations(paths: dict[str, Path]) -> list[Normalisation]:
    """`paths`: placeholder -> the folder it stands for (temporary folder, trees)."""
    rules = [
        ProgressOrder(),
        Normalisation(
            "measured fetch duration in each refresh line ('in 0.01 s')",
            "*/refresh-*.txt",
            r"(?m)(: .*) in \d+\.\d\d s$",
            r"\1 in <duration> s",
        ),
        Normalisation(
            "measured fetch duration in /sources/{id}.json fetches ('\"duration\": 0.004')",
            "*/http/%2Fsources%2F*.json",
            r'(?m)^(\s*"duration": )-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(,?)$',
            r'\1"<duration>"\2',
        ),
    ]
    # longest first: the worktree lies inside the temporary folder
    for placeholder, path in sorted(paths.items(), key=lambda kv: -len(str(kv[1]))):
        rules.append(
            Normalisation(
                f"the path {path} -> {placeholder}", "*", re.escape(str(path)), placeholder
            )
        )
    return rules


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", metavar="BASE_REV", help="the revision before the refactor")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the captured outputs")
    args = parser.parse_args()
    started = time.monotonic()
    base = git("rev-parse", "--verify", f"{args.base}^{{commit}}").strip()
    tmp = Path(tempfile.mkdtemp(prefix="same-outputs-")).resolve()
    worktree = tmp / "base"
    git("worktree", "add", "--quiet", "--detach", str(worktree), base)
    try:
        trees = {"before": worktree, "after": REPO}
        print(f"before: {args.base} ({base[:12]}) in {worktree}")
        print(f"after:  the working tree {REPO}")
        for tree in trees.values():
            check_import(tree)
        raw = tmp / "raw"
        for side, tree in trees.items():
            t0 = time.monotonic()
            capture(tree, tmp / "run", raw / side)
            print(f"captured {side} in {time.monotonic() - t0:.0f} s")
        rules = normalisations({"<TREE>": REPO, "<BASE-TREE>": worktree, "<TMP>": tmp})
        differing = compare(raw, tmp / "normalised", rules)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for kind in ("raw", "normalised"):
                shutil.copytree(tmp / kind, args.keep / kind, dirs_exist_ok=True)
            print(f"kept the outputs in {args.keep}/raw and {args.keep}/normalised")
    finally:
        git("worktree", "remove", "--force", str(worktree))
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"took {time.monotonic() - started:.0f} s")
    return 1 if differing else 0


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def tree_env(tree: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}
    return {**env, "PYTHONPATH": str(tree), **extra}


def run(tree: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PYTHON), *args], cwd=tree, env=env, capture_output=True, text=True, timeout=600
    )


def check_import(tree: Path) -> None:
    """The venv has /work/main installed editable: make sure PYTHONPATH wins."""
    result = run(tree, "-c", "import aggregator; print(aggregator.__file__)", env=tree_env(tree))
    found = Path(result.stdout.strip())
    if result.returncode != 0 or not found.is_relative_to(tree):
        sys.exit(f"{tree}: imports aggregator from {found or result.stderr}, not from the tree")
    print(f"  {tree}: aggregator from {found}")


def capture(tree: Path, work: Path, out: Path) -> None:
    """Both networks of one tree, each built in `work` (emptied first), captured to `out`."""
    for network in ("demo", "corpus"):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if network == "demo":
            shutil.copy2(tree / "sources.yaml", work / "sources.yaml")
            shutil.copytree(tree / "examples", work / "examples")
        else:
            (work / "sources.yaml").write_text(corpus_config(), encoding="utf-8")
        capture_network(tree, network, work, out / network)


def capture_network(tree: Path, network: str, work: Path, dest: Path) -> None:
    """Three refreshes on the fixed clock (the demo's feed edited before the third), what
    they print, the export and the HTTP answers."""
    config = str(work / "sources.yaml")
    env = tree_env(tree, AGGREGATOR_DATABASE_URL=f"sqlite:///{work / 'aggregator.db'}")

    def aggregator(*args: str) -> subprocess.CompletedProcess[str]:
        return run(tree, "-m", "aggregator", *args, "--config", config, env=env)

    (dest / "http").mkdir(parents=True)
    for i, when in enumerate(CLOCK, 1):
        if i == 3 and network == "demo":
            edit_feed(work / EDITED_FEED)
        result = aggregator("refresh", "--now", when)
        (dest / f"refresh-{i}.txt").write_text(
            f"exit code: {result.returncode}\n\n{result.stdout}", encoding="utf-8"
        )
        if result.returncode not in (0, 1) or result.stderr.strip():
            errors = result.stderr.splitlines()
            print(f"  {network} refresh {i}: exit code {result.returncode}, stderr:")
            print("\n".join(f"    {line}" for line in errors[:STDERR_LINES]))
            if len(errors) > STDERR_LINES:
                print(f"    ... {len(errors) - STDERR_LINES} more lines")
    must(aggregator("export", "--out", str(dest / "export")), f"{network}: export")
    runner = [config, str(dest / "http"), CLOCK[-1], str(EVENT_PAGES)]
    must(run(tree, "-c", HTTP_RUNNER, *runner, env=env), f"{network}: HTTP")


def must(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        sys.exit(f"{what} failed (exit {result.returncode}):\n{result.stderr}")


def edit_feed(path: Path) -> None:
    """A member edits its calendar, the same way every time: of the one-off events (no
    RRULE, no RECURRENCE-ID), the first is renamed, the second's STATUS is flipped
    (CANCELLED <-> CONFIRMED), the third is cancelled, the fourth moves a day later, and
    the last is deleted."""
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"BEGIN:VEVENT\r?\n.*?END:VEVENT\r?\n", text, flags=re.S)
    single = [b for b in blocks if "\nRRULE" not in b and "\nRECURRENCE-ID" not in b]
    if len(single) < 5:
        sys.exit(f"{path}: expected at least 5 one-off events to edit, found {len(single)}")
    flip = {"STATUS:CANCELLED": "STATUS:CONFIRMED", "STATUS:CONFIRMED": "STATUS:CANCELLED"}

    def later(match: re.Match[str]) -> str:
        day = date.fromisoformat(match[2]) + timedelta(days=1)
        return match[1] + day.strftime("%Y%m%d")

    edits = {
        single[0]: re.sub(r"(?m)^(SUMMARY[^:\n]*:.*?)(\r?)$", r"\1 (ændret)\2", single[0], count=1),
        single[1]: re.sub(r"STATUS:(CANCELLED|CONFIRMED)", lambda m: flip[m[0]], single[1]),
        single[2]: single[2].replace("STATUS:CONFIRMED", "STATUS:CANCELLED"),
        single[3]: re.sub(r"(?m)^(DT(?:START|END)[^:\n]*:)(\d{8})", later, single[3]),
        single[-1]: "",
    }
    for old, new in edits.items():
        if old == new:
            sys.exit(f"{path}: an edit changed nothing in\n{old}")
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")


def corpus_config() -> str:
    """Every .ics file and every RSS/Atom file (by INVENTORY.md's feed version) of the
    corpus, one source each, ids from the file names; pages linked from items are not
    read (they are on the internet)."""
    files = [(p, "ical") for p in sorted((CORPUS / "ics").glob("*.ics"))]
    row = re.compile(r"^\| (feeds/[^ |]+) \| \d+ \| ([^ |]+) \|", re.M)
    inventory = (CORPUS / "INVENTORY.md").read_text(encoding="utf-8")
    feeds = sorted(name for name, version in row.findall(inventory) if version != "?")
    files += [(CORPUS / name, "rss") for name in feeds]
    lines = [
        "network:",
        "  name: Corpus",
        "  timezone: Europe/Copenhagen",
        "limits:",
        "  max_pages: 0",
        "sources:",
    ]
    ids: set[str] = set()
    for path, kind in files:
        slug = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_")
        while slug in ids:
            slug += "-2"
        ids.add(slug)
        lines += [
            f"  - id: {slug}",
            f"    name: {json.dumps(path.name)}",
            f"    url: {json.dumps(str(path))}",
            f"    kind: {kind}",
        ]
    return "\n".join(lines) + "\n"


def compare(raw: Path, normalised: Path, rules: list[Normalisation]) -> int:
    """Normalise both sides into `normalised`, print the summary and the diffs; the number
    of outputs that differ."""
    names = sorted(
        {
            str(p.relative_to(raw / side))
            for side in ("before", "after")
            for p in (raw / side).rglob("*")
            if p.is_file()
        }
    )
    differing = []
    for name in names:
        texts = []
        for side in ("before", "after"):
            path = raw / side / name
            data = path.read_bytes() if path.exists() else None
            if data is not None:
                for rule in rules:
                    data = rule.apply(name, data)
                target = normalised / side / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            texts.append(data)
        if texts[0] != texts[1]:
            differing.append(name)
    print("normalisations applied (nothing else is):")
    for rule in rules:
        print(f"  - {rule.what}, in {rule.where}: {rule.count} replacements")
    print(f"{len(names)} outputs compared, {len(names) - len(differing)} identical")
    for name in differing:
        print(f"\nDIFFERS: {name}")
        before, after = normalised / "before" / name, normalised / "after" / name
        if not before.exists() or not after.exists():
            print(f"  only {'before' if before.exists() else 'after'} has it")
            continue
        lines = unified_diff(before, after, name)
        print("\n".join(lines[:DIFF_LINES]))
        if len(lines) > DIFF_LINES:
            print(f"... {len(lines) - DIFF_LINES} more diff lines")
    return len(differing)


def unified_diff(before: Path, after: Path, name: str) -> list[str]:
    """GNU diff where there is one (difflib takes minutes on a large output that changed
    throughout)."""
    labels = (f"before/{name}", f"after/{name}")
    if shutil.which("diff"):
        command = ["diff", "-a", "-u", "--label", labels[0], "--label", labels[1]]
        result = subprocess.run([*command, str(before), str(after)], capture_output=True)
        return result.stdout.decode("utf-8", "replace").splitlines()
    texts = [p.read_text(encoding="utf-8", errors="replace").splitlines() for p in (before, after)]
    return list(difflib.unified_diff(*texts, *labels, lineterm=""))


if __name__ == "__main__":
    sys.exit(main())
