"""The command line: serve, schedule, refresh, check, export, migrate, copy, prune. Every
command takes --config.

What a command needs and cannot have (the database unreachable or unopenable, another
application's, the published folder unwritable) is one line on stderr naming what and where,
a database's URL without its password, and exit code 1: checked before a server starts, and
whatever a database, its driver or a file raises later is said the same way."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from aggregator import __version__
from aggregator.arenas import fewer_arenas
from aggregator.config import load_config, normalise_database_url
from aggregator.errors import ConfigError, RemovalRefused
from aggregator.fetch import Fetcher, is_local, open_session
from aggregator.model import (
    FetchOutcome,
    Limits,
    Network,
    Settings,
    Source,
    SourceKind,
    SourceState,
)
from aggregator.normalise import iso
from aggregator.publish import publish
from aggregator.refresh import SourceReport, refresh_all
from aggregator.store import ForeignDatabase, Store, said, shown


class Unavailable(Exception):  # noqa: N818  (said to the operator, like ConfigError)
    """What a command needs cannot be had: the database or a folder. The words name what
    and where in one line, a database's URL without its password."""


#: what a database, its driver or the file system raises when what a command needs is not
#: there or goes away: said in one line, never as a traceback (asyncpg's own errors, which
#: SQLAlchemy does not always wrap, are told by their module: importing asyncpg here would
#: cost every SQLite command its import)
FAULTS = (SQLAlchemyError, OSError, sqlite3.Error, ForeignDatabase)


def is_fault(error: BaseException) -> bool:
    """Whether `error` is a database's, its driver's or the file system's (not a bug)."""
    return isinstance(error, FAULTS) or type(error).__module__.split(".")[0] == "asyncpg"


def main(argv: list[str] | None = None) -> int:
    fewer_arenas()  # before any thread runs
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command == "serve" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # their INFO lines (jobs added and run, migration context) say nothing an operator acts on
    for name in ("apscheduler", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except ConfigError as e:
        print(f"configuration error:\n{e}", file=sys.stderr)
        return 2
    except RemovalRefused as e:
        print(f"refused: {e}", file=sys.stderr)
        return 2
    except Unavailable as e:
        print(f"aggregator {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if not is_fault(e):
            raise  # a bug: its traceback is what a report needs
        # after the start: the database went away, a disk filled up
        words = said(e, *_urls(args))
        print(f"aggregator {args.command}: {type(e).__name__}: {words}", file=sys.stderr)
        return 1


def _urls(args) -> list[str]:
    """The database URLs a command was given: their passwords are kept out of what it says."""
    urls = [getattr(args, "to", None)]
    settings = getattr(args, "settings", None)
    if settings is not None:
        urls.append(settings.database_url)
    return [url for url in urls if url]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator", description=("One calendar for a network of member organisations.")
    )
    parser.add_argument("--version", action="version", version=f"aggregator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument(
            "--config", help="sources.yaml to read (default: $AGGREGATOR_CONFIG or ./sources.yaml)"
        )
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", cmd_serve, "serve the web outputs and refresh sources on schedule")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--no-scheduler",
        action="store_true",
        help="only serve what is stored (another process refreshes)",
    )
    allow_removals(serve)
    schedule = command(
        "schedule",
        cmd_schedule,
        "refresh sources on schedule, without the web outputs (one of several processes: "
        "exactly one of them fetches at a time)",
    )
    schedule.add_argument("--host", default="127.0.0.1", help="for /healthz and /metrics")
    schedule.add_argument("--port", type=int, default=8081, help="for /healthz and /metrics")
    allow_removals(schedule)
    refresh = command(
        "refresh", cmd_refresh, "fetch every source (or those named) once, publish, and exit"
    )
    refresh.add_argument(
        "id",
        nargs="*",
        help="only these sources (their ids in sources.yaml): re-read a member that has just "
        "fixed its feed without fetching the whole network",
    )
    allow_removals(refresh)
    # tests run a refresh at a fixed time (the outputs carry it); not for operators
    refresh.add_argument("--now", type=_instant, help=argparse.SUPPRESS)
    export = command(
        "export",
        cmd_export,
        "copy the published folder (calendar.ics, feed.atom, events.json, the page, gzips)",
    )
    export.add_argument("--out", required=True, type=Path, help="folder to write to")
    export.add_argument(
        "--events",
        action="store_true",
        help="also write each event's page, JSON and .ics (events/ID.html, .json, .ics)",
    )
    export.add_argument("--now", type=_instant, help=argparse.SUPPRESS)
    check = command("check", cmd_check, "read one feed (URL or file) without storing it")
    check.add_argument("target", help="a feed URL (http, https, webcal) or a file")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.add_argument("--kind", choices=[k.value for k in SourceKind], default="auto")
    check.add_argument(
        "--no-pages",
        action="store_true",
        help="RSS/Atom: do not read the pages the items link to (only the feed itself)",
    )
    command("migrate", cmd_migrate, "create or upgrade the database schema, and exit")
    copy = command(
        "copy",
        cmd_copy,
        "copy the whole database (from database_url) into another, empty one, and check "
        "the counts: SQLite to PostgreSQL or back",
    )
    copy.add_argument(
        "--to",
        required=True,
        help="the database to copy into (sqlite:///path.db or postgresql://user@host/name)",
    )
    prune = command(
        "prune", cmd_prune, "delete at once what is kept of sources no longer in sources.yaml"
    )
    allow_removals(prune)
    return parser


def allow_removals(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--allow-removals",
        action="store_true",
        help="accept a configuration that takes out more than half of the sources at once",
    )


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone")
    return value.astimezone(UTC)


def _settings(args) -> Settings:
    settings = load_config(args.config)
    if getattr(args, "allow_removals", False):
        settings = replace(settings, allow_removals=True)
    args.settings = settings  # for main(): the password to keep out of what it prints
    return settings


async def open_store(settings: Settings) -> Store:
    """The store, migrated; Unavailable, naming the database and why, when it cannot be
    opened or is another application's."""
    url = settings.database_url
    _sqlite_folder(url)
    try:
        return await Store.open(url)
    except ForeignDatabase as e:
        raise Unavailable(f"the database {shown(url)} is not this aggregator's: {e}") from e
    except Exception as e:
        if not is_fault(e):
            raise
        raise Unavailable(f"cannot open the database {shown(url)}: {said(e, url)}") from e


def _sqlite_folder(url: str) -> None:
    """A SQLite file's folder must be there (SQLite's own words would be "unable to open
    database file", for a missing folder and for much else)."""
    try:
        address = make_url(url)
    except (ArgumentError, ValueError):
        return  # Store.open says why
    path = address.database
    if address.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if Path(path).is_dir():
        raise Unavailable(f"cannot open the database {shown(url)}: {path} is a folder")
    folder = Path(path).parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise Unavailable(f"cannot open the database {shown(url)}: its folder {folder} {what}")


def writable_folder(folder: Path, what: str = "the published folder") -> None:
    """Make `folder` if it is missing and write a file in it; Unavailable, naming it and
    why, when either fails (a path through a file, a read-only disk, no permission)."""
    try:
        if folder.exists() and not folder.is_dir():
            raise Unavailable(f"cannot write {what} {folder}: it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise Unavailable(f"cannot write {what} {folder}: {e.strerror or e}") from e


def _ready(settings: Settings, *, folder: bool) -> None:
    """Before a server starts: the store opens (and is migrated), and with `folder` the
    published folder can be written. A server opens both in its application's lifecycle,
    where a failure would be aiohttp's traceback."""

    async def check() -> None:
        store = await open_store(settings)
        await store.close()

    asyncio.run(check())
    if folder and settings.outputs.folder is not None:
        writable_folder(settings.outputs.folder)


def cmd_serve(args) -> int:
    from aggregator.web import serve  # noqa: PLC0415  (each command loads what it uses)

    settings = _settings(args)
    _ready(settings, folder=True)
    serve(settings, args.host, args.port, scheduler=not args.no_scheduler)
    return 0


def cmd_schedule(args) -> int:
    from aggregator.web import schedule  # noqa: PLC0415

    settings = _settings(args)
    _ready(settings, folder=False)  # the scheduler publishes into the store, not the folder
    schedule(settings, args.host, args.port)
    return 0


def cmd_copy(args) -> int:
    args.settings = load_config(args.config)
    return asyncio.run(copy_command(args.settings, args.to))


async def copy_command(settings: Settings, to_url: str) -> int:
    """The command: 0 when every table was copied and counted equal, 1 (the reason on
    stderr) when refused or failed."""
    from aggregator.store.copy import CopyFailed, CopyRefused, copy_database  # noqa: PLC0415

    target = normalise_database_url(to_url)
    try:
        await copy_database(settings.database_url, target)
    except CopyRefused as e:
        print(f"copy refused: {e}", file=sys.stderr)
        return 1
    except CopyFailed as e:
        print(f"copy failed: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_refresh(args) -> int:
    settings = _settings(args)
    known = {s.id for s in settings.sources}
    unknown = [i for i in dict.fromkeys(args.id) if i not in known]
    if unknown:
        print(
            f"error: no source {', '.join(map(repr, unknown))} in {settings.config_path}; "
            f"the sources are: {', '.join(sorted(known)) or 'none'}",
            file=sys.stderr,
        )
        return 2
    chosen = [s for s in settings.sources if s.id in set(args.id)] or None
    return asyncio.run(_refresh(settings, args.now, chosen))


async def _refresh(
    settings: Settings, now: datetime | None, chosen: list[Source] | None = None
) -> int:
    """Refresh every source (or the `chosen`) once with a progress line per source, publish,
    and say how it went; exit 1 when every source read failed."""
    stop = _stop_on_sigterm(settings)
    store = await open_store(settings)
    sources = chosen or list(settings.sources)
    progress = Progress(len(sources), sys.stdout)
    try:
        async with (
            open_session(settings.network, settings.limits) as session,
            Fetcher(session, settings.limits) as fetcher,
        ):
            reports, changed = await refresh_all(
                store,
                fetcher,
                settings,
                now or datetime.now(UTC),
                sources=sources,
                on_report=progress.done,
                on_start=progress.started,
                stop=stop,
            )
        progress.close()
        states = await store.source_states()
        counts = await store.counts()
        owed = await store.publish_owed()
    finally:
        await store.close()
    stopped = stop.is_set()
    _print_refreshed(sources, reports, changed, states, counts, owed=owed, stopped=stopped)
    failed = sum(r.outcome is FetchOutcome.FAILED for r in reports)
    return 1 if reports and failed == len(reports) else 0


def _stop_on_sigterm(settings: Settings) -> asyncio.Event:
    """SIGTERM (docker stop, systemd): finish the sources being read, start no other."""
    stop = asyncio.Event()

    def stopping() -> None:
        print(
            f"SIGTERM: finishing the sources being read (at most "
            f"{settings.limits.stop_seconds:g} s), starting no other",
            file=sys.stderr,
            flush=True,
        )
        stop.set()

    if threading.current_thread() is threading.main_thread():
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping)
    return stop


def _print_refreshed(
    sources: list[Source],
    reports: list[SourceReport],
    changed: bool,
    states: dict[str, SourceState],
    counts: dict[str, int],
    *,
    owed: bool,
    stopped: bool,
) -> None:
    """What a refresh did, and every source it read that is not well or has moved."""
    total = len(sources)
    failed = sum(r.outcome is FetchOutcome.FAILED for r in reports)
    if stopped:
        print(
            f"stopped (SIGTERM): {len(reports)} of {total} sources done, "
            f"{total - len(reports)} not read"
            + ("; the publish is left to the next run" if owed else "")
        )
        total = len(reports)
    print(
        f"{total - failed} of {total} sources read; {counts['events']} network events "
        f"from {counts['occurrences']} occurrences; "
        f"{'published changes' if changed else 'nothing changed'}"
    )
    unwell = [s for s in sources if states[s.id].health != "ok"]
    moved = [s for s in sources if states[s.id].moved_to]
    for source in dict.fromkeys(unwell + moved):
        print(f"  {source.id}: {states[source.id].describe()}")


class Progress:
    """A refresh's progress: in a terminal, a status line kept at the bottom (sources done
    of all, the ones being read now) above which each source's report appears; otherwise
    just the reports, one plain line each, for logs and cron mail."""

    def __init__(self, total: int, out) -> None:
        self.total = total
        self.out = out
        self.terminal = out.isatty()
        self.count = 0
        self.reading: dict[str, None] = {}

    def started(self, source) -> None:
        self.reading[source.id] = None
        self._status()

    def done(self, report) -> None:
        self.count += 1
        self.reading.pop(report.source_id, None)
        self._clear()
        print(f"[{self.count}/{self.total}] {report.line()}", file=self.out, flush=True)
        self._status()

    def close(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.terminal:
            self.out.write("\r\x1b[2K")

    def _status(self) -> None:
        if not self.terminal:
            return
        now = ", ".join(self.reading)
        line = (
            f"[{self.count}/{self.total}] reading {now}" if now else f"[{self.count}/{self.total}]"
        )
        width = shutil.get_terminal_size().columns - 1
        self._clear()
        self.out.write(line[:width])
        self.out.flush()


def cmd_migrate(args) -> int:
    settings = _settings(args)

    async def run() -> None:
        store = await open_store(settings)
        await store.close()

    asyncio.run(run())
    print(f"database at {shown(settings.database_url)} is up to date")
    return 0


def cmd_prune(args) -> int:
    """Delete on purpose what is kept of the sources no longer in sources.yaml (else kept
    `limits.removed_source_days`, so that putting one back loses nothing)."""
    settings = _settings(args)
    now = datetime.now(UTC)

    async def run() -> dict[str, dict]:
        store = await open_store(settings)
        try:
            await store.sync_sources(
                settings.sources, now=now, allow_removals=settings.allow_removals
            )
            if await store.publish_owed():  # their events leave the outputs first
                await publish(store, settings, now)
            return await store.delete_removed_sources(settings.sources)
        finally:
            await store.close()

    deleted = asyncio.run(run())
    if not deleted:
        print("nothing to delete: every stored source is in the configuration")
        return 0
    for source_id, counts in deleted.items():
        what = ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "no data"
        print(f"deleted {source_id}: {what}")
    print(f"deleted {len(deleted)} sources no longer in the configuration")
    return 0


def cmd_export(args) -> int:
    """Copy the published folder (written first when it is not of this data), and with
    --events every published event's page, JSON and .ics, for a static host."""
    settings = _settings(args)
    if settings.outputs.folder is not None:
        writable_folder(settings.outputs.folder)
    writable_folder(args.out, "the folder of --out")

    async def run() -> list[Path]:
        from aggregator.published import Folder, write_event_files  # noqa: PLC0415

        store = await open_store(settings)
        try:
            now = args.now or datetime.now(UTC)
            # written when stale (`refresh` does not write it: a serving process sees the
            # new data within a second and writes it, and export when it copies it)
            folder = Folder(settings.outputs.folder)
            await folder.update(store, settings, now)
            current = folder.current()
            args.out.mkdir(parents=True, exist_ok=True)
            written = []
            for path in sorted(current.iterdir()):
                shutil.copyfile(path, args.out / path.name)
                written.append(args.out / path.name)
            if args.events:
                written += await write_event_files(store, settings, now, args.out / "events")
        finally:
            await store.close()
        return written

    written = asyncio.run(run())
    events = [p for p in written if p.parent.name == "events"]
    for path in written:
        if path.parent.name != "events":
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if events:
        print(f"wrote {len(events):,} files of single events in {events[0].parent}")
    return 0


def cmd_check(args) -> int:
    """A member organisation's report on its feed: what we found and what we skipped."""
    from aggregator.check import CheckReport, check_feed  # noqa: PLC0415

    try:
        settings = _settings(args)
        network, limits = settings.network, settings.limits
    except ConfigError:
        if args.config:
            raise
        network, limits = Network(name="check"), Limits()
    target = args.target
    if is_local(target):
        target = str(Path(target).resolve())
    now = datetime.now(UTC)
    if args.no_pages:
        limits = replace(limits, max_pages=0)

    async def run() -> CheckReport:
        async with open_session(network, limits) as session, Fetcher(session, limits) as fetcher:
            return await check_feed(target, fetcher, network, limits, now, SourceKind(args.kind))

    report = asyncio.run(run())
    if report.error:
        return _check_failed(args, report.error)
    occurrences = report.occurrences
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=1))
        return 0
    print(
        f"{target}: {len(occurrences)} occurrences from "
        f"{iso(now.date())} - {limits.past_days} days to + {limits.future_days} days "
        f"({report.series} repeating series)"
    )
    for o in occurrences:
        flag = "" if o.status.value == "scheduled" else f" [{o.status.value}]"
        how = f"  (found by {o.origin})" if o.origin else ""
        print(f"  {iso(o.start)}  {o.title}{flag}{how}")
    if report.warnings:
        print(f"{len(report.warnings)} warnings:")
        for warning in report.warnings:
            print(f"  - {warning}")
    else:
        print("no warnings")
    return 0


def _check_failed(args, message: str) -> int:
    if args.json:
        print(json.dumps({"occurrences": [], "warnings": [], "error": message}, ensure_ascii=False))
    else:
        print(message, file=sys.stderr)
    return 1
