"""What the web server answers from: the published folder's files, and a bounded cache of
the bodies rendered on demand (windows, filters, pages, the event pages).

The folder (published.py) holds every plain output and its gzip, written at each publish:
they are sent as they are (sendfile), with the ETag of their content, and the process holds
none of them in memory. A change of its `current` version is seen at once by the process
that wrote it (`reload`), at once by those told of the publish (PostgreSQL's NOTIFY: `told`),
and within `poll_every` seconds by any other.

A body rendered on demand is kept until the data changes, or until newer ones push it out
(KEPT_BODIES; the memory budget for small bodies; the disk budget for large ones, which
counts every temporary file of a body, those of before the last change and those still
being sent included). A large one is served as it was until its new render is done: its
subscribers do not all wait those seconds after every publish.

Renders are the one thing a stranger can make this process do at length, so they are
admitted (`Renders`):

    identical requests share one render;
    at most `renders` run at once, the next free one going to the client running fewest,
      and no client runs them all while another waits;
    a client waits on at most `client_renders` at once (then 429), all clients on at most
      `queued_renders` (then 503);
    a render whose clients have all gone is cancelled.

The folder's files, /healthz and every 304 of a kept body never wait on a render.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from aggregator import metrics
from aggregator.model import Settings
from aggregator.published import Folder
from aggregator.responses import BUDGET, IN_MEMORY, Body, Budget, KeptFile, OverBudget, Payload
from aggregator.store import Store

log = logging.getLogger(__name__)

#: rendered bodies kept at most: filtered outputs each have their own
KEPT_BODIES = 256

#: a small file waits this long at most for the folder to be written again (seconds)
CATCH_UP_WAIT = 2.0
#: a client waiting on a render is looked at this often: gone, it no longer waits (seconds)
LOOK_EVERY = 0.5

#: makes a body on demand (reads the store, hands its CPU work to threads)
Render = Callable[[], Awaitable[Body]]


class Refused(Exception):
    """A render not admitted: the client waits on too many (429), or all clients do (503);
    `retry_after` seconds is when to ask again."""

    def __init__(self, status: int, retry_after: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.retry_after, self.reason = status, retry_after, reason


class Gone(Exception):
    """The client left while its render was under way (nothing to answer)."""


@dataclass(frozen=True)
class Asker:
    """Who asks for a body: the client (its address, or "" for the process itself) and how
    to tell that it has gone (its connection closed)."""

    client: str = ""
    gone: Callable[[], bool] = lambda: False


#: the process itself (tests, a body asked for in code)
ITSELF = Asker()


class Slots:
    """At most `size` renders at once, handed out fairly: a free slot goes to the waiting
    client that runs the fewest (first come among equals), and while another client may come,
    no client holds more than size - 1 of them (one at least, with one slot)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.running: Counter[str] = Counter()
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def _each(self) -> int:
        return max(1, self.size - 1)

    @contextlib.asynccontextmanager
    async def slot(self, client: str) -> AsyncIterator[None]:
        ready = asyncio.get_running_loop().create_future()
        self._waiting.append((client, ready))
        self._grant()
        if not ready.done():
            try:
                await ready
            except asyncio.CancelledError:
                if ready.done() and not ready.cancelled():  # granted as it was cancelled
                    self._release(client)
                elif (client, ready) in self._waiting:
                    self._waiting.remove((client, ready))
                raise
        try:
            yield
        finally:
            self._release(client)

    def _release(self, client: str) -> None:
        self.running[client] -= 1
        if self.running[client] <= 0:
            del self.running[client]
        self._grant()

    def _grant(self) -> None:
        # a waiter cancelled a moment ago is still listed until its task runs: not granted
        self._waiting = [w for w in self._waiting if not w[1].done()]
        while self._waiting and sum(self.running.values()) < self.size:
            allowed = [w for w in self._waiting if self.running[w[0]] < self._each]
            if not allowed:
                return
            chosen = min(allowed, key=lambda w: self.running[w[0]])  # min: the first of equals
            self._waiting.remove(chosen)
            self.running[chosen[0]] += 1
            chosen[1].set_result(None)


@dataclass(eq=False)
class _Job:
    """One render under way: its task, the client that started it, and the clients waiting
    on it (none: it renders again a body of before, served meanwhile)."""

    task: asyncio.Task[Body]
    client: str
    #: the clients waiting on it (each counted once per wait)
    askers: Counter[str] = field(default_factory=Counter)


class Outputs:
    """The published folder's bodies, and the bodies rendered on demand (see the module)."""

    def __init__(
        self, store: Store, settings: Settings, folder: Folder, poll_every: float = 1.0
    ) -> None:
        self.store = store
        self.settings = settings
        self.folder = folder
        self.poll_every = poll_every
        limits = settings.outputs
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
        #: the renders under way since the last change, by body
        self._jobs: dict[str, _Job] = {}
        #: the renders each client waits on (or asked for), at most client_renders
        self._per_client: Counter[str] = Counter()
        self.slots = Slots(limits.renders)
        #: the disk every temporary body file of this process holds (responses.Budget)
        self.budget = Budget(limits.disk_budget, self._make_room)
        self.memory_budget = limits.memory_budget
        #: asked when the store's data is newer than the folder's (another process wrote
        #: the store): starts writing the folder, and gives the write to wait for
        self.on_behind: Callable[[], asyncio.Task[None] | None] = lambda: None
        self.catching_up: asyncio.Task[None] | None = None
        self._told: asyncio.Task[None] | None = None
        #: set (and made anew) each time another version of the folder is served
        self._reloaded = asyncio.Event()
        #: the data version the folder is being caught up to (a folder of it, or newer,
        #: ends the catching up)
        self._wanted = 0

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
        if self.catching_up is not None and manifest.get("data_version", -1) >= self._wanted:
            # of the data now: nobody waits for the rest of the writer's work (after a
            # burst of publishes it rests, then looks again)
            self.catching_up = None
        self._reloaded.set()
        self._reloaded = asyncio.Event()
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
        self._jobs.clear()

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
            self._wanted = version
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
                # a moment, not the half minute of a large network's write: until the
                # folder is of the data (a reload says so), or the writer is done
                deadline = time.monotonic() + CATCH_UP_WAIT
                while self.catching_up is catching_up and not catching_up.done():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    reloaded = asyncio.ensure_future(self._reloaded.wait())
                    await asyncio.wait(
                        [catching_up, reloaded], timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    reloaded.cancel()
                self.reload()
                body = self._files.get(name)
        return body

    async def body(
        self, name: str, render: Render, asker: Asker = ITSELF, *, cheap: bool = False
    ) -> Body:
        """The kept body `name`, rendered by `render` when there is none; while it renders,
        a large one is the body of before the change (see the module). `cheap`: a render of
        one event's bytes, which takes no slot (it cannot keep anyone waiting).

        Raises Refused when the render is not admitted, Gone when the asker left."""
        await self.poll()
        body = self._bodies.get(name)
        if body is not None:
            self._bodies.move_to_end(name)
            return body
        job = self._jobs.get(name)
        previous = self._previous.get(name)
        client = asker.client
        if previous is not None and (job is None or not job.task.done()):
            # the body of before, at once; its render starts when there is room for it
            # (a client over its renders starts none), and goes on for the next ones
            if job is None:
                with contextlib.suppress(Refused):
                    self._admit(client, new=True)
                    self._start(name, render, client, cheap)
            return previous
        if job is None or not job.askers[client]:
            self._admit(client, new=job is None)
        if job is None:
            job = self._start(name, render, client, cheap)
        return await self._wait(job, asker)

    def _start(self, name: str, render: Render, client: str, cheap: bool) -> _Job:
        job = _Job(asyncio.create_task(self._render(name, render, client, cheap)), client)
        self._jobs[name] = job
        job.task.add_done_callback(partial(self._rendered, name, job))
        return job

    def _admit(self, client: str, *, new: bool) -> None:
        limits = self.settings.outputs
        if self._per_client[client] >= limits.client_renders:
            raise Refused(
                429,
                _retry_after(limits.client_renders),
                f"at most {limits.client_renders} renders of one client at once",
            )
        if new and self.slots.waiting >= limits.queued_renders:
            raise Refused(503, _retry_after(1), "the server is rendering as much as it can")

    def _join(self, job: _Job, client: str) -> None:
        if not job.askers[client]:
            self._per_client[client] += 1
        job.askers[client] += 1

    def _leave(self, job: _Job, client: str) -> None:
        job.askers[client] -= 1
        if job.askers[client] <= 0:
            del job.askers[client]
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    async def _wait(self, job: _Job, asker: Asker) -> Body:
        """The job's body, once rendered; while it renders, the asker is looked at: when it
        has gone it waits no more, and a render nobody waits for is cancelled."""
        self._join(job, asker.client)
        try:
            while True:
                # shielded: one who goes does not cancel what the others wait for
                done, _ = await asyncio.wait({job.task}, timeout=LOOK_EVERY)
                if done:
                    return job.task.result()
                if asker.gone():
                    raise Gone(asker.client)
        finally:
            self._leave(job, asker.client)
            if not job.askers and not job.task.done():
                job.task.cancel()

    def _rendered(self, name: str, job: _Job, task: asyncio.Task[Body]) -> None:
        """A render ended: a failure is logged (those who asked got it, or the body of
        before), and the next request tries again."""
        if self._jobs.get(name) is job:
            del self._jobs[name]
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if isinstance(error, OverBudget):
                log.warning("rendering %s: %s", name[:200], error)
            else:
                log.error("rendering %s failed", name[:200], exc_info=error)
            # what the render's frames held (a half-written body's files) is let go now,
            # not when the last one who got the error forgets it
            traceback.clear_frames(error.__traceback__)

    async def _render(self, name: str, render: Render, client: str, cheap: bool) -> Body:
        """Render `name` in a slot (one event's bytes without one) and keep it, unless the
        data changed meanwhile; its temporary files count against the disk budget."""
        async with contextlib.nullcontext() if cheap else self.slots.slot(client):
            body = self._bodies.get(name)
            if body is not None:
                return body
            generation = self._generation
            # the version first: what is rendered is at least as new as it. So the poll
            # after an in-process publish (which invalidated already) finds this version
            # and does not throw away, and render again, what was rendered after it
            version = await self.store.data_version()
            started = time.perf_counter()
            BUDGET.set(self.budget)  # this task's own context: its writers count here
            body = await render()
            took = time.perf_counter() - started
            metrics.RENDER_SECONDS.labels(metrics.output_name(name)).observe(took)
            if generation == self._generation:
                self._version = version
                self._keep(name, body)
                self._previous.pop(name, None)
            return body

    def _keep(self, name: str, body: Body) -> None:
        """Keep a body, pushing out the least recently asked for beyond the bounds (its disk
        is the budget's: counted from its first byte)."""
        self._bodies[name] = body
        while len(self._bodies) > 1 and (
            len(self._bodies) > KEPT_BODIES or _bytes(self._bodies) > self.memory_budget
        ):
            self._bodies.popitem(last=False)

    def _make_room(self, size: int) -> None:
        """Let go of `size` bytes of the disk budget if it can: the oldest large bodies of
        before the last change first, then the least recently asked for kept ones (a body
        being sent lets go of its file when the last response is done)."""
        goal = self.budget.held - size
        for bodies in (self._previous, self._bodies):
            for name in [n for n, b in bodies.items() if b.large]:
                if self.budget.held <= goal:
                    return
                del bodies[name]


def _retry_after(renders: int) -> int:
    """Seconds to wait before asking again: a render takes a few."""
    return max(1, min(30, 2 * renders))


def _bytes(bodies: dict[str, Body]) -> int:
    """The bytes of the bodies kept in memory."""
    return sum(b.plain.size + b.gzipped.size for b in bodies.values() if not b.large)


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
