"""What the web server answers from: the published folder's files, and a bounded cache of
the bodies rendered on demand (windows, filters, pages, the event pages).

The folder (published.py) holds every plain output and its gzip, written at each publish:
they are sent as they are (sendfile), with the ETag of their content, and the process holds
none of them in memory. A change of its `current` version is seen at once by the process
that wrote it (`reload`), at once by those told of the publish (PostgreSQL's NOTIFY: `told`),
and within `poll_every` seconds by any other.

A body rendered on demand is kept until the data changes, or until newer ones push it out
(KEPT_BODIES, and bytes: small bodies in memory up to KEPT_MEMORY, large ones in unlinked
files up to KEPT_DISK). A large one is served as it was until its new render is done: its
subscribers do not all wait those seconds after every publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path

from aggregator import metrics
from aggregator.model import Settings
from aggregator.published import Folder
from aggregator.responses import IN_MEMORY, Body, KeptFile, Payload
from aggregator.store import Store

log = logging.getLogger(__name__)

#: rendered bodies kept at most: filtered outputs each have their own
KEPT_BODIES = 256
#: bytes of the bodies kept in memory, and of those kept in files, at most
KEPT_MEMORY = 16 * 1024 * 1024
KEPT_DISK = 2 * 1024 * 1024 * 1024

#: a small file waits this long at most for the folder to be written again (seconds)
CATCH_UP_WAIT = 2.0

#: makes a body on demand (reads the store, hands its CPU work to threads)
Render = Callable[[], Awaitable[Body]]


class Outputs:
    """The published folder's bodies, and the bodies rendered on demand (see the module)."""

    def __init__(
        self, store: Store, settings: Settings, folder: Folder, poll_every: float = 1.0
    ) -> None:
        self.store = store
        self.settings = settings
        self.folder = folder
        self.poll_every = poll_every
        #: the folder's version served, its manifest and its bodies by file name
        self.current: Path | None = None
        self.manifest: dict = {}
        self._files: dict[str, Body] = {}
        self._bodies: OrderedDict[str, Body] = OrderedDict()
        self._version: int | None = None
        self._polled = float("-inf")
        #: bumped by every invalidation; what was read before one is never kept after it
        self._generation = 0
        #: large bodies of before the last change, served until their new render is done
        self._previous: OrderedDict[str, Body] = OrderedDict()
        #: the render of each body under way since the last change
        self._rendering: dict[str, asyncio.Task[Body]] = {}
        self._lock = asyncio.Lock()
        #: asked when the store's data is newer than the folder's (another process wrote
        #: the store): starts writing the folder, and gives the write to wait for
        self.on_behind: Callable[[], asyncio.Task[None] | None] = lambda: None
        self.catching_up: asyncio.Task[None] | None = None
        self._told: asyncio.Task[None] | None = None

    # the published folder

    def reload(self) -> bool:
        """Serve the folder's current version, if it is not the one served; whether it
        changed."""
        current = self.folder.current()
        if current == self.current:
            return False
        manifest = self.folder.manifest(current)
        if manifest is None:
            return False
        files = {}
        for name, entry in manifest["files"].items():
            try:
                files[name] = _file_body(current, name, entry)
            except OSError as error:  # removed meanwhile: the next look finds the newer one
                log.warning("published file %s/%s: %s", current, name, error)
                return False
        self.current, self.manifest, self._files = current, manifest, files
        return True

    def published(self, name: str) -> Body | None:
        """A file of the published folder, as a body; None when there is none (yet)."""
        return self._files.get(name)

    def written(self) -> datetime | None:
        """When the folder's current version was written."""
        at = self.manifest.get("written")
        return datetime.fromisoformat(at) if at else None

    # the bodies rendered on demand

    def invalidate(self) -> None:
        """The data changed: every body rendered on demand is made again when asked for."""
        self._generation += 1
        self._previous.update((n, b) for n, b in self._bodies.items() if b.large)
        while len(self._previous) > KEPT_BODIES:  # the oldest filter goes first
            self._previous.popitem(last=False)
        self._bodies.clear()
        self._rendering.clear()

    def told(self) -> None:
        """Another process told of a publish (PostgreSQL's NOTIFY): look now, not at the
        next request after `poll_every`."""
        self._polled = float("-inf")
        if self._told is None or self._told.done():
            self._told = asyncio.create_task(self.poll())

    async def poll(self) -> None:
        """Look (at most once in `poll_every` seconds) whether the folder or the store has
        changed: another process's publish."""
        now = time.monotonic()
        if now - self._polled < self.poll_every:
            return
        self._polled = now
        self.reload()
        generation = self._generation
        version = await self.store.data_version()
        # invalidated meanwhile (a publish of this process): what this read is older than
        # what is kept now, and the next poll looks again
        if generation == self._generation and version != self._version:
            if self._version is not None:
                self.invalidate()
            self._version = version
        if self.manifest.get("data_version", version) != version:
            self.catching_up = self.on_behind()

    def fresh(self, name: str) -> Body | None:
        """The folder's `name` when it was looked at a moment ago and is not being written
        again (the hot path: no await); None when published_now must look."""
        if self.catching_up is None and time.monotonic() - self._polled < self.poll_every:
            return self._files.get(name)
        return None

    async def published_now(self, name: str) -> Body | None:
        """`published(name)` once the folder is of the store's data: while the folder is
        written again, a large file is served as it was, a small one waits for it (up to
        CATCH_UP_WAIT seconds)."""
        if self.catching_up is not None and self.catching_up.done():
            self.catching_up = None
        if self.catching_up is None and time.monotonic() - self._polled < self.poll_every:
            return self._files.get(name)  # the hot path: looked a moment ago
        await self.poll()
        body = self._files.get(name)
        catching_up = self.catching_up
        if catching_up is not None and not catching_up.done():
            if body is None or body.plain.size + body.gzipped.size <= IN_MEMORY:
                # a moment, not the half minute of a large network's write
                await asyncio.wait([catching_up], timeout=CATCH_UP_WAIT)
                self.reload()
                body = self._files.get(name)
        return body

    async def body(self, name: str, render: Render) -> Body:
        """The kept body `name`, rendered by `render` when there is none; while it renders,
        a large one is the body of before the change (see the module)."""
        await self.poll()
        body = self._bodies.get(name)
        if body is not None:
            self._bodies.move_to_end(name)
            return body
        task = self._rendering.get(name)
        if task is None:
            task = asyncio.create_task(self._render(name, render))
            self._rendering[name] = task
            task.add_done_callback(partial(self._rendered, name))
        previous = self._previous.get(name)
        if previous is not None and not task.done():
            return previous
        # shielded: a client that goes away does not cancel what the others wait for
        return await asyncio.shield(task)

    def _rendered(self, name: str, task: asyncio.Task[Body]) -> None:
        """A render ended: a failure is logged (those who asked got it, or the body of
        before), and the next request tries again."""
        if self._rendering.get(name) is task:
            del self._rendering[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("rendering %s failed", name, exc_info=task.exception())

    async def _render(self, name: str, render: Render) -> Body:
        """Render `name` (one render at a time) and keep it, unless the data changed
        meanwhile."""
        async with self._lock:
            body = self._bodies.get(name)
            if body is None:
                generation = self._generation
                # the version first: what is rendered is at least as new as it. So the poll
                # after an in-process publish (which invalidated already) finds this version
                # and does not throw away, and render again, what was rendered after it
                version = await self.store.data_version()
                started = time.perf_counter()
                body = await render()
                took = time.perf_counter() - started
                metrics.RENDER_SECONDS.labels(metrics.output_name(name)).observe(took)
                if generation == self._generation:
                    self._version = version
                    self._keep(name, body)
                    self._previous.pop(name, None)
            return body

    def _keep(self, name: str, body: Body) -> None:
        """Keep a body, pushing out the least recently asked for beyond the bounds."""
        self._bodies[name] = body
        while len(self._bodies) > 1 and (
            len(self._bodies) > KEPT_BODIES
            or _bytes(self._bodies, large=False) > KEPT_MEMORY
            or _bytes(self._bodies, large=True) > KEPT_DISK
        ):
            self._bodies.popitem(last=False)


def _bytes(bodies: dict[str, Body], *, large: bool) -> int:
    return sum(b.plain.size + b.gzipped.size for b in bodies.values() if b.large == large)


def _file_body(folder: Path, name: str, entry: dict) -> Body:
    """A file of the published folder and its gzip twin, opened (sent with sendfile)."""
    plain = (folder / name).open("rb")
    gzipped = (folder / f"{name}.gz").open("rb")
    return Body(
        entry["type"],
        entry["etag"],
        Payload(entry["size"], file=KeptFile(file=plain)),
        Payload(entry["gzip_size"], file=KeptFile(file=gzipped)),
        link=entry.get("link"),
    )
