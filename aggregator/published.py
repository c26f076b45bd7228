"""The outputs as files: every output rendered from the store a part at a time (never the
whole network in memory), and the published folder that holds the plain ones.

    folder/
      current -> v000042-20270301T101500123456     (a symlink, swapped by rename)
      v000042-20270301T101500123456/
        calendar.ics  calendar.ics.gz              (the plain /calendar.ics and its gzip)
        feed.atom     feed.atom.gz
        events.json   events.json.gz               (the first page of /events.json)
        index.html    index.html.gz                (/ in the network's first language)
        index.da.html index.da.html.gz ...         (/ in each language)
        manifest.json                              (each file's type, ETag, sizes, links)

A publish writes a new version beside the current one (each file written and fsynced), then
swaps `current` to it with one rename: a reader sees the old folder or the new, never half of
one. `serve` sends these files (sendfile) with their ETags; `aggregator export --out` copies
them, so a static host serves the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import BinaryIO

from aggregator.model import ChangeRecord, NetworkEvent, Settings, Status
from aggregator.render.views import network_zone
from aggregator.responses import ATOM, BUDGET, HTML, ICS, JSON, BodyWriter, Held, dumps
from aggregator.search import query_words
from aggregator.selection import Selection
from aggregator.store import Store
from aggregator.windows import Window, calendar_window, decode_cursor, encode_cursor

log = logging.getLogger(__name__)

#: events on a page of /events.json when ?limit= is not given, and at most
PAGE_LIMIT = 500
MAX_LIMIT = 5000
#: and the bytes of its events at most (the first event always goes on a page): however
#: long the members' descriptions, a page stays under a megabyte
PAGE_BYTES = 900_000
#: entries in the Atom feed (the newest changes, within 30 days)
FEED_ENTRIES = 200
#: how cancelled and postponed events reach a calendar client (render_calendar)
CANCELLED_POLICIES = ("status", "prefix", "hide")
#: bytes copied at a time
CHUNK = 1 << 20
#: the selection of the plain outputs
EVERYTHING = Selection()
MANIFEST = "manifest.json"
#: the write lock of the folder (Folder.update), and how often a waiting writer looks again
LOCK = ".lock"
LOCK_WAIT = 0.02
CURRENT = "current"
#: a half-written version older than this is a crashed writer's: removed
STALE_SECONDS = 3600
#: between two writes of the folder, rest this many times as long as the last one took...
REST = 4
#: ...but no longer than this, in seconds
MAX_REST = 600.0


@dataclass(frozen=True)
class Written:
    """One output written: its name in the folder, type, ETag, sizes and Link header."""

    name: str
    content_type: str
    etag: str
    size: int
    gzip_size: int
    link: str | None = None


class _Render:
    """What every render needs: the store, the settings, the network's zone."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.network = settings.network
        self.tz = network_zone(settings.network)

    async def events(
        self, window: Window | None, chosen: Selection, words: tuple[str, ...] = (), **kwargs
    ) -> AsyncIterator[list[NetworkEvent]]:
        """The published events in the window that the selection admits and whose text holds
        the `words` (the store's search column, search.matches' rule), a part at a time."""
        start, end = (window.start, window.end) if window else (None, None)
        kwargs.setdefault("sources", chosen.sources)
        async for part in self.store.stream_published(start, end, words=words, **kwargs):
            kept = [
                e
                for e in part
                if (window is None or window.admits(e.event, self.tz)) and chosen.admits(e.event)
            ]
            if kept:
                yield kept


async def write_calendar(
    store: Store,
    settings: Settings,
    out: BodyWriter,
    window: Window | None,
    chosen: Selection = EVERYTHING,
    cancelled: str = "status",
) -> None:
    """The calendar (render.ics.render_calendar's bytes), a part at a time: the events go to
    a scratch file first, so that the VTIMEZONEs they use can come before them."""
    from aggregator.render.ics import calendar_header, vtimezone  # noqa: PLC0415

    render = _Render(store, settings)
    tzids: set[str] = set()
    # the scratch is as large as the body: it counts against the render's disk budget too
    held = Held(BUDGET.get())
    with tempfile.TemporaryFile(prefix="aggregator-calendar-") as scratch, _released(held):
        async for part in render.events(window, chosen):
            if cancelled == "hide":
                part = [e for e in part if e.event.status not in _OFF]
            tzids.update(e.event.tzid for e in part if not e.event.all_day and e.event.tzid)
            data = b"".join(_vevent(e, cancelled) for e in part)
            held.take(len(data))
            await asyncio.to_thread(scratch.write, data)
        head = calendar_header(settings.network).to_ical()
        end = b"END:VCALENDAR\r\n"
        from aggregator.normalise import zone  # noqa: PLC0415

        parts = [head[: -len(end)], *(vtimezone(t) for t in sorted(tzids) if zone(t))]
        await asyncio.to_thread(out.write, b"".join(parts))
        scratch.seek(0)
        while chunk := await asyncio.to_thread(scratch.read, CHUNK):
            await asyncio.to_thread(out.write, chunk)
        out.write(end)


_OFF = (Status.CANCELLED, Status.POSTPONED)


@contextlib.contextmanager
def _released(held: Held) -> Iterator[None]:
    """The held bytes given back when the block ends (its file is closed with it)."""
    try:
        yield
    finally:
        held.release()


def _vevent(item: NetworkEvent, cancelled: str) -> bytes:
    if cancelled == "prefix":
        return item.ics.replace(b"\r\nSTATUS:CANCELLED\r\n", b"\r\nSTATUS:CONFIRMED\r\n")
    return item.ics


async def write_events_page(
    store: Store,
    settings: Settings,
    out: BodyWriter,
    window: Window | None,
    chosen: Selection = EVERYTHING,
    *,
    limit: int | None = None,
    after: tuple[datetime, str] | None = None,
    next_href: Callable[[str], str],
) -> str | None:
    """One page of /events.json: at most `limit` events (and PAGE_BYTES) after the cursor
    `after`, with their histories in brief, one event a line, and "next": the next page's
    address (None on the last). Returns that address."""
    limit = limit or PAGE_LIMIT
    render = _Render(store, settings)
    entries: list[bytes] = []
    size = 0
    last: NetworkEvent | None = None
    more = False
    async for part in render.events(window, chosen, after=after, at_a_time=min(limit + 1, 2000)):
        history = await store.event_history([e.event.id for e in part])
        made = await asyncio.to_thread(_entries, part, history, settings)
        for item, data in zip(part, made, strict=True):
            # at most `limit` events, and at most PAGE_BYTES: however long the members'
            # descriptions, a page stays small (the first event is always on it)
            if len(entries) >= limit or (entries and size + len(data) > PAGE_BYTES):
                more = True
                break
            entries.append(data)
            size += len(data) + 2
            last = item
        if more:
            break
    following = None
    if more and last is not None:
        following = next_href(encode_cursor(last.event.start, last.event.id))
    network = json.dumps(_network_json(settings), ensure_ascii=False).encode("utf-8")
    out.write(b'{"network": ' + network + b',\n"events": [\n')
    out.write(b",\n".join(entries))
    out.write(b'\n],\n"next": ' + json.dumps(following).encode("ascii") + b"}\n")
    return following


def _entries(
    part: list[NetworkEvent], history: dict[str, list[ChangeRecord]], settings: Settings
) -> list[bytes]:
    """Each event of a page of /events.json as one line of JSON (event_json, brief)."""
    from aggregator.render.json import event_json  # noqa: PLC0415

    return [
        json.dumps(
            event_json(e, settings.network, history.get(e.event.id), brief=True),
            ensure_ascii=False,
        ).encode("utf-8")
        for e in part
    ]


def _network_json(settings: Settings) -> dict:
    network = settings.network
    return {
        "name": network.name,
        "description": network.description,
        "timezone": network.timezone,
        "url": network.base_url,
    }


async def feed_changes(
    store: Store, settings: Settings, window: Window | None, chosen: Selection
) -> list[ChangeRecord]:
    """The newest changes (FEED_ENTRIES at most, within 30 days) of the events in the window
    that the selection admits, each read a part at a time."""
    if window is None and not chosen:
        return await store.recent_changes(FEED_ENTRIES)
    render = _Render(store, settings)
    found: list[ChangeRecord] = []
    async for part in store.stream_recent_changes():
        ids = {c.event_id for c in part}
        shown = {
            e.event.id async for events in render.events(window, chosen, ids=ids) for e in events
        }
        found += [c for c in part if c.event_id in shown]
        if len(found) >= FEED_ENTRIES:
            break
    return found[:FEED_ENTRIES]


async def write_feed(
    store: Store,
    settings: Settings,
    out: BodyWriter,
    window: Window | None,
    chosen: Selection = EVERYTHING,
) -> None:
    from aggregator.render.atom import render_atom  # noqa: PLC0415

    changes = await feed_changes(store, settings, window, chosen)
    out.write(await asyncio.to_thread(render_atom, changes, settings.network))


async def page_events(
    store: Store,
    settings: Settings,
    start: datetime,
    end: datetime,
    chosen: Selection,
    q: str = "",
    *,
    at_least: int = 0,
    at_most: int,
    after: tuple[datetime, str] | None = None,
) -> list[NetworkEvent]:
    """What the page (/) is made of: the first `at_most` events (after the cursor `after`)
    that overlap [start, end) and match, and when they are fewer than `at_least`, the first
    `at_least` that end after `start`. Never more than `at_most` in memory."""
    render = _Render(store, settings)
    words = query_words(q)

    async def first(window: Window, count: int) -> list[NetworkEvent]:
        found: list[NetworkEvent] = []
        async for part in render.events(window, chosen, words, after=after, at_a_time=count):
            found += part
            if len(found) >= count:
                break
        return found[:count]

    shown = await first(Window(start, end), at_most)
    if len(shown) < at_least:
        shown = await first(Window(start, None), at_least)
    return shown


async def render_page(
    store: Store,
    settings: Settings,
    now: datetime,
    *,
    lang: str,
    chosen: Selection = EVERYTHING,
    embed: bool = False,
    month: str | None = None,
    q: str = "",
    saved: str | None = None,
    after: str | None = None,
) -> bytes:
    """The page at / (render.html.render_index) with the events of its period (after the
    cursor `after`: the page before ended there)."""
    from aggregator.render import index as index_view  # noqa: PLC0415
    from aggregator.render.html import render_index  # noqa: PLC0415

    tz = network_zone(settings.network)
    period = index_view.page_period(now, tz, month)
    events = await page_events(
        store,
        settings,
        period.start,
        period.end,
        chosen,
        q,
        at_least=0 if month else index_view.PAGE_EVENTS,
        at_most=index_view.PAGE_MAX + 1,
        after=decode_cursor(after) if after else None,
    )

    def rendered() -> bytes:
        text = render_index(
            events,
            settings,
            lang=lang,
            now=now,
            filters=chosen,
            embed=embed,
            month=month,
            q=q,
            saved=saved,
            after=after,
        )
        return text.encode("utf-8")

    return await asyncio.to_thread(rendered)


async def write_event_files(
    store: Store, settings: Settings, now: datetime, folder: Path
) -> list[Path]:
    """Every event in the plain calendar's window as files for a static host: ID.ics,
    ID.json and ID.html (the network's first language; ID.LANG.html in each), a part at a
    time."""
    from aggregator.render.html import render_event_page  # noqa: PLC0415
    from aggregator.render.ics import render_calendar  # noqa: PLC0415
    from aggregator.render.json import event_json  # noqa: PLC0415

    network, languages = settings.network, settings.network.languages
    window = calendar_window(settings.outputs, now, network_zone(network))
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write(part: list[NetworkEvent], history: dict[str, list[ChangeRecord]]) -> list[Path]:
        paths = []
        for item in part:
            changes = history.get(item.event.id, [])
            files = {
                f"{item.event.id}.ics": render_calendar([item], network),
                f"{item.event.id}.json": dumps(event_json(item, network, changes)),
            }
            for position, lang in enumerate(languages):
                page = render_event_page(item, settings, changes, lang=lang).encode("utf-8")
                files[f"{item.event.id}.{lang}.html"] = page
                if position == 0:
                    files[f"{item.event.id}.html"] = page
            for name, data in files.items():
                (folder / name).write_bytes(data)
                paths.append(folder / name)
        return paths

    async for part in _Render(store, settings).events(window, EVERYTHING):
        history = await store.event_history([e.event.id for e in part])
        written += await asyncio.to_thread(write, part, history)
    return written


class FolderWriter:
    """Writes the folder again after each publish, one write at a time: a publish during a
    write makes one more write after it, however many publishes there were."""

    def __init__(
        self,
        folder: Folder,
        store: Store,
        settings: Settings,
        clock: Callable[[], datetime],
        on_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.folder, self.store, self.settings, self.clock = folder, store, settings, clock
        self.on_written = on_written
        self._task: asyncio.Task[None] | None = None
        self._again = False

    @property
    def writing(self) -> asyncio.Task[None] | None:
        """The writes under way, if any."""
        return None if self._task is None or self._task.done() else self._task

    def request(self) -> asyncio.Task[None]:
        """A write is due: start one, or have the running one followed by another (each
        looks first whether the folder is of the data and hour already: another process
        may have written it)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._writes())
        else:
            self._again = True
        return self._task

    async def _writes(self) -> None:
        while True:
            self._again = False
            started = time.monotonic()
            try:
                await self.folder.update(self.store, self.settings, self.clock())
                self.on_written()
            except Exception:
                log.exception("writing the published folder %s failed", self.folder.root)
            if not self._again:
                return
            # publishes keep coming: the next write waits, so that writing takes at most a
            # fifth of a core (a large network's calendar is half a minute to write;
            # a small one's, milliseconds)
            await asyncio.sleep(min(REST * (time.monotonic() - started), MAX_REST))

    async def close(self) -> None:
        if self._task is not None:
            self._again = False
            await asyncio.gather(self._task, return_exceptions=True)


#: what stale() finds: everything to write again, or only the pages
ALL, PAGES = "all", "pages"


def stale(manifest: dict | None, data_version: int, now: datetime, tz: tzinfo) -> str | None:
    """What of the folder must be written again: ALL when it was never written, is older
    than the data or of another day (the calendar's days count from today), PAGES when it
    was written in another hour (the page shows what is coming from now), else None."""
    if manifest is None or manifest.get("data_version") != data_version:
        return ALL
    if manifest.get("day") != now.astimezone(tz).date().isoformat():
        return ALL
    written = datetime.fromisoformat(manifest["written"])
    if f"{written.astimezone(UTC):%Y%m%d%H}" != f"{now.astimezone(UTC):%Y%m%d%H}":
        return PAGES
    return None


class Folder:
    """The published folder (see the module)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def current(self) -> Path | None:
        """The version being served; None before the first write."""
        try:
            target = os.readlink(self.root / CURRENT)
        except OSError:
            return None
        return self.root / target

    def manifest(self, version: Path | None = None) -> dict | None:
        """The version's manifest (the current one's by default); None when there is none or
        it is not one we write: a wrong shape, or a file it names missing or of another
        size. A manifest not to be trusted is as good as none: the folder is written
        again, and meanwhile the outputs are rendered on demand."""
        version = version or self.current()
        if version is None:
            return None
        try:
            manifest = json.loads((version / MANIFEST).read_bytes())
        except (OSError, ValueError):
            return None
        problem = manifest_problem(manifest, version)
        if problem is not None:
            log.warning("the published folder's %s: %s", version / MANIFEST, problem)
            return None
        return manifest

    async def update(self, store: Store, settings: Settings, now: datetime) -> Path | None:
        """Write what is stale (see stale()): everything, or the pages; the version written,
        None when the folder was of the data and the hour already.

        The processes of one machine share the folder: one writes at a time (an flock on
        LOCK), and the others, as soon as it is written (not when the lock is theirs, one
        after another), find it so."""
        tz = network_zone(settings.network)
        version = await store.data_version()

        def written() -> bool:
            return stale(self.manifest(), version, now, tz) is None

        async with self._lock(unless=written) as ours:
            if not ours:
                return None
            due = stale(self.manifest(), await store.data_version(), now, tz)
            if due is None:
                return None
            return await self.write(store, settings, now, pages_only=due == PAGES)

    @contextlib.asynccontextmanager
    async def _lock(self, unless: Callable[[], bool] = lambda: False) -> AsyncIterator[bool]:
        """The folder's write lock, waited for a little at a time (cancellable; the kernel
        lets go of it when its process ends, however it ends); False, without it, once
        `unless()` holds while it waits (another process wrote what was wanted)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if unless():
                        yield False
                        return
                    await asyncio.sleep(LOCK_WAIT)
            yield True
        finally:
            os.close(fd)

    async def write(
        self, store: Store, settings: Settings, now: datetime, *, pages_only: bool = False
    ) -> Path:
        """Render every plain output into a new version and make it current; `pages_only`:
        only the pages, the other files linked from the current version (seconds less for
        a large network, whose calendar is half a minute to write)."""
        self.root.mkdir(parents=True, exist_ok=True)
        data_version = await store.data_version()
        stamp = f"{now.astimezone(UTC):%Y%m%dT%H%M%S%f}"
        name = f"v{data_version:06d}-{stamp}-{secrets.token_hex(4)}"
        building = self.root / f".{name}.tmp"
        building.mkdir()
        try:
            before = self.manifest() if pages_only else None
            if before is not None and before.get("data_version") == data_version:
                written = await self._render_pages(building, store, settings, now, before)
                day = before["day"]
            else:
                written = await self._render(building, store, settings, now)
                day = now.astimezone(network_zone(settings.network)).date().isoformat()
            manifest = {
                "data_version": data_version,
                "written": now.astimezone(UTC).isoformat(),
                "day": day,
                "events": await store.published_count(),
                "counts": await store.counts(),
                "files": {w.name: _entry(w) for w in written},
            }
            _write_synced(building / MANIFEST, json.dumps(manifest, indent=1).encode() + b"\n")
            _sync(building)
            version = self.root / name
            building.rename(version)
            link = self.root / f".{CURRENT}.{os.getpid()}.tmp"
            link.unlink(missing_ok=True)
            link.symlink_to(name)
            previous = self.current()
            link.rename(self.root / CURRENT)
            _sync(self.root)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        self._forget(keep={version, previous})
        return version

    async def _render(
        self, folder: Path, store: Store, settings: Settings, now: datetime
    ) -> list[Written]:
        data = await self._render_data(folder, store, settings, now)
        return [*data, *(await self._pages(folder, store, settings, now))]

    async def _render_pages(
        self, folder: Path, store: Store, settings: Settings, now: datetime, before: dict
    ) -> list[Written]:
        """The pages anew; every other file linked from the current version, as it was."""
        current = self.current()
        kept = []
        for name, entry in before["files"].items():
            if name.startswith("index."):
                continue
            for file in (name, f"{name}.gz"):
                os.link(current / file, folder / file)
            kept.append(
                Written(
                    name,
                    entry["type"],
                    entry["etag"],
                    entry["size"],
                    entry["gzip_size"],
                    entry.get("link"),
                )
            )
        return [*kept, *(await self._pages(folder, store, settings, now))]

    async def _pages(
        self, folder: Path, store: Store, settings: Settings, now: datetime
    ) -> list[Written]:
        """The page (/) in each language, and index.html in the first."""
        written = []
        for position, lang in enumerate(settings.network.languages):
            page = await render_page(store, settings, now, lang=lang)

            async def write_page(out: BodyWriter, page: bytes = page) -> None:
                out.write(page)

            written.append(await _to_file(folder, f"index.{lang}.html", HTML, write_page))
            if position == 0:
                written.append(await _to_file(folder, "index.html", HTML, write_page))
        return written

    async def _render_data(
        self, folder: Path, store: Store, settings: Settings, now: datetime
    ) -> list[Written]:
        """calendar.ics, feed.atom and the first page of events.json."""
        tz = network_zone(settings.network)
        window = calendar_window(settings.outputs, now, tz)
        written = [
            await _to_file(
                folder,
                "calendar.ics",
                ICS,
                lambda out: write_calendar(store, settings, out, window),
            ),
            await _to_file(
                folder, "feed.atom", ATOM, lambda out: write_feed(store, settings, out, None)
            ),
        ]
        links: list[str] = []

        async def first_page(out: BodyWriter) -> None:
            following = await write_events_page(
                store,
                settings,
                out,
                window,
                next_href=lambda cursor: f"/events.json?cursor={cursor}",
            )
            if following:
                links.append(f'<{following}>; rel="next"')

        written.append(await _to_file(folder, "events.json", JSON, first_page))
        if links:
            written[-1] = Written(**{**written[-1].__dict__, "link": links[0]})
        return written

    def _forget(self, keep: Iterable[Path | None]) -> None:
        """Remove the versions no longer served (the one before the current is kept: a
        server may be opening its files), and half-written ones of crashed writers."""
        kept = {p.name for p in keep if p is not None}
        for path in self.root.iterdir():
            if path.name in kept or path.name == CURRENT or not path.is_dir():
                continue
            if path.name.startswith(".") and _age(path) < STALE_SECONDS:
                continue  # another process's version being written
            shutil.rmtree(path, ignore_errors=True)


def manifest_problem(manifest: object, version: Path) -> str | None:
    """What makes `manifest` not one Folder.write writes for the files of `version` (None:
    nothing): its fields and their types, every file named with its gzip twin, each of the
    size it says."""
    if not isinstance(manifest, dict):
        return "not a JSON object"
    for key, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            return f"{key!r} missing or not a {kind.__name__}"
    counts = manifest.get("counts", {})
    if not isinstance(counts, dict) or not all(isinstance(v, int) for v in counts.values()):
        return "'counts' is not an object of numbers"
    if not isinstance(manifest.get("events", 0), int):
        return "'events' is not a number"
    try:
        datetime.fromisoformat(manifest["written"])
        date.fromisoformat(manifest["day"])
    except ValueError:
        return "'written' or 'day' is not a date"
    for name, entry in manifest["files"].items():
        if not isinstance(entry, dict) or "/" in name or name.startswith("."):
            return f"file {name[:80]!r}: not a file of the folder"
        for key, kind in _FILE_FIELDS.items():
            if not isinstance(entry.get(key), kind) or isinstance(entry.get(key), bool):
                return f"file {name!r}: {key!r} missing or not a {kind.__name__}"
        for file, size in ((name, entry["size"]), (f"{name}.gz", entry["gzip_size"])):
            try:
                found = (version / file).stat().st_size
            except OSError:
                return f"file {file!r} is missing"
            if found != size:
                return f"file {file!r} holds {found} bytes, not the {size} it says"
    return None


#: the fields of a manifest and of each of its files, and their types
_MANIFEST_FIELDS = {"data_version": int, "written": str, "day": str, "files": dict}
_FILE_FIELDS = {"type": str, "etag": str, "size": int, "gzip_size": int}


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _entry(written: Written) -> dict:
    entry = {
        "type": written.content_type,
        "etag": written.etag,
        "size": written.size,
        "gzip_size": written.gzip_size,
    }
    if written.link:
        entry["link"] = written.link
    return entry


async def _to_file(folder: Path, name: str, content_type: str, render) -> Written:
    with (folder / name).open("wb") as plain, (folder / f"{name}.gz").open("wb") as gzipped:
        out = BodyWriter(content_type, plain, gzipped)
        await render(out)
        etag = out.finish()
        gzip_size = gzipped.tell()
        await asyncio.to_thread(_fsync, plain, gzipped)
    return Written(name, content_type, etag, out.size, gzip_size)


def _fsync(*files: BinaryIO) -> None:
    for file in files:
        os.fsync(file.fileno())


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _sync(folder: Path) -> None:
    """fsync a folder: the names written in it survive a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
