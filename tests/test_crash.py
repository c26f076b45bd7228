"""Crashes and stops (issue 13): `aggregator refresh` killed with SIGKILL at any moment, or
stopped with SIGTERM, leaves a database that opens, sources that lost nothing they had,
and outputs that catch up with those of a run that was never stopped.

Kills at a chosen moment come from a test hook that lives only here: a warm Python process
(the "zygote", with the aggregator imported once) forks one child per run, and a child
counts the SQL statements it sends and SIGKILLs itself after the Nth. Every moment of a
refresh that matters to the database lies between two statements, so spreading N over a
run's statements spreads the kills over the whole cycle, migrations included. Other kills
hit the installed `aggregator` command from outside, as each source's line appears.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aggregator.cli import main
from tests.conftest import FEEDS, ROOT
from tests.test_store import head

NOW1 = "2026-11-25T12:00:00+00:00"
NOW2 = "2026-11-25T18:00:00+00:00"

ZYGOTE = r"""
import json, os, signal, sys

from sqlalchemy import event
from sqlalchemy.engine import Engine

import aggregator.cli

state = {"statements": 0, "kill_after": None}


@event.listens_for(Engine, "after_cursor_execute")
def count(*_):
    state["statements"] += 1
    if state["kill_after"] is not None and state["statements"] >= state["kill_after"]:
        os.killpg(0, signal.SIGKILL)  # the run, and any worker process it started


for line in sys.stdin:
    job = json.loads(line)
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
        state["kill_after"] = job["kill_after"]
        code = aggregator.cli.main(job["argv"])
        with open(job["count_file"], "w") as out:
            out.write(str(state["statements"]))
        raise SystemExit(code)  # through atexit: the run's worker processes are stopped
    _, status = os.waitpid(child, 0)
    print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
"""


def clean_environ() -> dict[str, str]:
    """This environment without AGGREGATOR_* (each run's config names its database)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")}


class Zygote:
    """Runs CLI commands in forked children of one warm process; a run may be killed with
    SIGKILL after its Nth SQL statement."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.errors = (folder / "zygote.err").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
            cwd=ROOT,
            env=clean_environ(),
            start_new_session=True,
        )

    def run(self, argv: list[str], kill_after: int | None = None) -> tuple[int, int]:
        """The run's exit code (-9: killed) and how many statements it sent."""
        counted = self.folder / "statements"
        counted.unlink(missing_ok=True)
        job = {"argv": argv, "kill_after": kill_after, "count_file": str(counted)}
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, (self.folder / "zygote.err").read_text()
        code = json.loads(line)
        return code, int(counted.read_text()) if counted.exists() else -1

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.errors.close()


@pytest.fixture
def zygote(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("AGGREGATOR_"):
            monkeypatch.delenv(name)
    started = Zygote(tmp_path)
    yield started
    started.close()


# -- the network: the demo's five members and a sixth that co-hosts, as local files -------

EDITS = {
    # a new title, a moved event, a cancellation, a new event, a new time in RSS text
    "kulturhuset.ics": [
        ("SUMMARY:Foredrag: Byens grønne gårde", "SUMMARY:Foredrag: Byens grønne gårde (ny sal)"),
        ("20270522T100000", "20270522T110000"),
        ("20270522T150000", "20270522T160000"),
    ],
    "groen-omstilling.ics": [
        ("STATUS:CONFIRMED\r\nSUMMARY:Repair Café", "STATUS:CANCELLED\r\nSUMMARY:Repair Café")
    ],
    "floating.ics": [
        (
            "END:VCALENDAR",
            "BEGIN:VEVENT\r\nUID:ungdomsraadet-2027-09-hackathon@ungdomsraadet.example\r\n"
            "DTSTAMP:20261125T100000Z\r\nDTSTART:20270918T100000\r\nDTEND:20270918T180000\r\n"
            "SUMMARY:Hackathon for unge\r\nEND:VEVENT\r\nEND:VCALENDAR",
        )
    ],
    "globalt-netvaerk.xml": [("13:00 - 15:30", "14:00 - 16:30")],
}


def write_feeds(folder: Path, edited: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in FEEDS.iterdir():
        data = path.read_bytes()
        if edited:
            text = data.decode()
            for old, new in EDITS.get(path.name, []):
                if "\r\n" not in text:
                    old, new = old.replace("\r\n", "\n"), new.replace("\r\n", "\n")
                assert text.count(old) == 1, (path.name, old)
                text = text.replace(old, new)
            data = text.encode()
        (folder / path.name).write_bytes(data)
    return folder


def write_config(path: Path, feeds: Path, database: Path) -> Path:
    members = [
        ("kulturhuset", "kulturhuset.ics", "ical"),
        ("groen-omstilling", "groen-omstilling.ics", "ical"),
        ("frivilligcentret", "outlook-member.ics", "auto"),
        ("ungdomsraadet", "floating.ics", "ical"),
        ("globalt-netvaerk", "globalt-netvaerk.xml", "rss"),
        ("kulturhuset-cafe", "kulturhuset.ics", "ical"),  # co-hosts: the same UIDs
    ]
    sources = "".join(
        f"  - id: {id}\n    name: {id.title()}\n    url: {feeds / file}\n    kind: {kind}\n"
        for id, file, kind in members
    )
    path.write_text(
        "network:\n  name: Netværket\n  timezone: Europe/Copenhagen\n  languages: [da, en]\n"
        "  base_url: http://crash.test\n"
        f"database_url: sqlite:///{database}\nsources:\n{sources}",
        encoding="utf-8",
    )
    return path


def exported(config: Path, out: Path) -> dict[str, bytes]:
    assert main(["export", "--config", str(config), "--out", str(out)]) == 0
    return {
        name: (out / name).read_bytes() for name in ("calendar.ics", "events.json", "feed.atom")
    }


def stored(database: Path) -> dict[str, frozenset]:
    """Each source's occurrences as the database holds them now."""
    with sqlite3.connect(database) as db:
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
        found: dict[str, set] = {}
        for source_id, key, print_ in db.execute(
            "select source_id, key, fingerprint from occurrences"
        ):
            found.setdefault(source_id, set()).add((key, print_))
    return {k: frozenset(v) for k, v in found.items()}


def spread(count: int, points: int) -> list[int]:
    """`points` statement numbers spread evenly over 1..count."""
    return sorted({1 + round(i * (count - 1) / (points - 1)) for i in range(points)})


def copy_database(source: Path, target: Path) -> None:
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")


# -- migrations ------------------------------------------------------------------------


def test_a_kill_at_any_statement_of_the_first_start_leaves_a_database_that_opens(zygote, tmp_path):
    feeds = write_feeds(tmp_path / "feeds", edited=False)
    first = write_config(tmp_path / "first.yaml", feeds, tmp_path / "first.db")
    code, statements = zygote.run(["migrate", "--config", str(first)])
    assert code == 0 and statements > 20
    for kill_after in range(1, statements):
        database = tmp_path / f"killed-{kill_after}.db"
        config = write_config(tmp_path / "killed.yaml", feeds, database)
        code, _ = zygote.run(["migrate", "--config", str(config)], kill_after=kill_after)
        assert code == -signal.SIGKILL
        assert main(["migrate", "--config", str(config)]) == 0, f"after {kill_after}"
        with sqlite3.connect(database) as db:
            assert db.execute("select version_num from alembic_version").fetchall() == [(head(),)]
            assert db.execute("pragma integrity_check").fetchone() == ("ok",)


# -- the refresh cycle -----------------------------------------------------------------


def test_a_refresh_killed_at_any_moment_catches_up_with_one_never_killed(zygote, tmp_path, capsys):
    started = time.monotonic()
    before, after = write_feeds(tmp_path / "v1", False), write_feeds(tmp_path / "v2", True)

    # the reference: a network read once, then again after its members changed; never killed
    empty = write_config(tmp_path / "empty.yaml", before, tmp_path / "empty.db")
    assert main(["migrate", "--config", str(empty)]) == 0
    nothing = exported(empty, tmp_path / "out-empty")
    reference = tmp_path / "reference.db"
    config = write_config(tmp_path / "reference.yaml", before, reference)
    code, first_statements = zygote.run(["refresh", "--config", str(config), "--now", NOW1])
    assert code == 0
    first = (exported(config, tmp_path / "out-1"), stored(reference))
    copy_database(reference, tmp_path / "read-once.db")
    config = write_config(tmp_path / "reference.yaml", after, reference)
    code, second_statements = zygote.run(["refresh", "--config", str(config), "--now", NOW2])
    assert code == 0
    second = (exported(config, tmp_path / "out-2"), stored(reference))
    assert first[0] != second[0] and first[0] != nothing
    capsys.readouterr()

    # (moment, feeds, now, (outputs, occurrences) before the run, the same after it)
    kills = []
    fresh = (nothing, {})
    for n in spread(first_statements, 14):
        kills.append((f"first start, statement {n}", n, before, NOW1, fresh, first))
    for n in spread(second_statements, 14):
        kills.append((f"changed feeds, statement {n}", n, after, NOW2, first, second))

    def check(moment, database, config, now, was, will_be):
        # the database opens, and no source holds anything but all it had or all it read
        assert main(["migrate", "--config", str(config)]) == 0, moment
        now_stored = stored(database)
        for source_id in set(was[1]) | set(will_be[1]):
            assert now_stored.get(source_id, frozenset()) in (
                was[1].get(source_id, frozenset()),
                will_be[1][source_id],
            ), f"{moment}: {source_id}"
        # the outputs are those before or those after: a publish is whole or not at all
        assert exported(config, tmp_path / "out-killed") in (was[0], will_be[0]), moment
        # a refresh after the kill ends where a run never killed ended
        assert main(["refresh", "--config", str(config), "--now", now]) == 0, moment
        assert exported(config, tmp_path / "out-caught-up") == will_be[0], moment
        assert stored(database) == will_be[1], moment
        capsys.readouterr()

    for index, (moment, kill_after, feeds, now, was, will_be) in enumerate(kills):
        database = tmp_path / f"killed-{index}.db"
        if was is first:
            copy_database(tmp_path / "read-once.db", database)
        config = write_config(tmp_path / "killed.yaml", feeds, database)
        code, _ = zygote.run(
            ["refresh", "--config", str(config), "--now", now], kill_after=kill_after
        )
        assert code == -signal.SIGKILL, moment
        check(moment, database, config, now, was, will_be)

    # and the installed command, killed from outside as each source's line appears
    aggregator = shutil.which("aggregator", path=str(Path(sys.executable).parent))
    assert aggregator
    outside = 0
    for line_number in range(1, 7):
        database = tmp_path / f"outside-{line_number}.db"
        copy_database(tmp_path / "read-once.db", database)
        config = write_config(tmp_path / "killed.yaml", after, database)
        run = subprocess.Popen(
            [aggregator, "refresh", "--config", str(config), "--now", NOW2],
            stdout=subprocess.PIPE,
            text=True,
            env=clean_environ(),
            start_new_session=True,
        )
        assert run.stdout
        for _ in range(line_number):
            assert run.stdout.readline().startswith("[")
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        run.stdout.close()
        outside += 1
        check(f"after line {line_number}", database, config, NOW2, first, second)

    figures = (len(kills) + outside, time.monotonic() - started)
    print(f"{figures[0]} kills in {figures[1]:.1f} s", file=sys.stderr)
    assert figures[0] >= 20


# -- SIGTERM ---------------------------------------------------------------------------


class HeldServer:
    """Members' feeds on 127.0.0.1; /slow.ics answers only when the test lets it go."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.slow_status = 200
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.asked.append(request.path)
        name = request.path.strip("/").removesuffix(".ics")
        if name == "slow":
            self.arrived.set()
            await self.release.wait()
            if self.slow_status != 200:
                return web.Response(status=self.slow_status)
        from tests.test_config_change import calendar

        return web.Response(body=calendar(name, 3), content_type="text/calendar")

    def url(self, path: str) -> str:
        assert self.server
        return str(self.server.make_url(path))


@pytest.fixture
async def held():
    served = HeldServer()
    app = web.Application()
    app.router.add_get("/{name}", served.handle)
    served.server = TestServer(app, host="127.0.0.1")
    await served.server.start_server()
    yield served
    served.release.set()
    await served.server.close()


def stop_config(tmp_path: Path, held: HeldServer, stop_seconds: float) -> Path:
    sources = "".join(
        f"  - id: {name}\n    name: {name.title()}\n    url: {held.url(f'/{name}.ics')}\n"
        "    kind: ical\n"
        for name in ("a", "slow", "b", "c")
    )
    path = tmp_path / "sources.yaml"
    path.write_text(
        "network:\n  name: Netværket\n  timezone: Europe/Copenhagen\n"
        f"database_url: sqlite:///{tmp_path / 'stop.db'}\n"
        # one source at a time, in order: a is done when slow is asked, b and c wait
        f"limits:\n  concurrency: 1\n  stop_seconds: {stop_seconds}\n"
        f"sources:\n{sources}",
        encoding="utf-8",
    )
    return path


async def refresh_until_slow_is_asked(config: Path, held: HeldServer):
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "refresh",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_environ(),
        cwd=ROOT,
    )
    await asyncio.wait_for(held.arrived.wait(), 60)
    return run


async def terminate(run) -> None:
    """SIGTERM, and on until the run says it heard it."""
    run.send_signal(signal.SIGTERM)
    line = await asyncio.wait_for(run.stderr.readline(), 60)
    assert b"SIGTERM" in line, line


async def exported_titles(config: Path, out: Path) -> set[str]:
    data = (await asyncio.to_thread(exported, config, out))["calendar.ics"].decode()
    return {line.split(" hos ")[1] for line in data.splitlines() if " hos " in line}


async def test_sigterm_finishes_the_source_being_read_starts_no_other_and_publishes(held, tmp_path):
    config = stop_config(tmp_path, held, stop_seconds=30)
    run = await refresh_until_slow_is_asked(config, held)
    await terminate(run)
    held.release.set()
    out, err = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 0, err.decode()
    assert "stopped (SIGTERM): 2 of 4 sources done, 2 not read" in out.decode()
    assert held.asked == ["/a.ics", "/slow.ics"]
    assert await exported_titles(config, tmp_path / "site") == {"a", "slow"}


async def test_sigterm_gives_up_on_a_source_after_stop_seconds_and_the_next_run_publishes(
    held, tmp_path
):
    config = stop_config(tmp_path, held, stop_seconds=0.5)
    run = await refresh_until_slow_is_asked(config, held)
    asked = time.monotonic()
    await terminate(run)
    out, err = await asyncio.wait_for(run.communicate(), 60)
    assert run.returncode == 0, err.decode()
    assert time.monotonic() - asked < 10
    assert "the publish is left to the next run" in out.decode()
    assert await exported_titles(config, tmp_path / "first") == set()

    # next run: a reads unchanged and slow fails, yet what a read last time is published
    held.slow_status, held.asked = 500, []
    held.release.set()
    again = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "refresh",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        env=clean_environ(),
        cwd=ROOT,
    )
    out, _ = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0, out.decode()
    assert "/a.ics" in held.asked
    assert await exported_titles(config, tmp_path / "second") == {"a", "b", "c"}
