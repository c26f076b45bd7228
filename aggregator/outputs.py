"""The outputs the web server keeps: each body rendered once per change of the data and kept
as bytes (with its ETag and gzip) until the data changes again.

Rendering, hashing and gzipping a body is seconds of work for a large network: it runs in a
thread, so that the event loop answers every other request (the 304s of the subscribers
above all) meanwhile. And a large body (a network's calendar) is served as it was until its
new render is done: its subscribers do not all wait those seconds after every publish, they
get the change a few seconds later (as if the publish had ended then)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from aggregator import metrics
from aggregator.model import NetworkEvent, Settings
from aggregator.responses import Body
from aggregator.store import Store

log = logging.getLogger(__name__)

#: rendered bodies kept at most: filtered outputs each have their own
KEPT_BODIES = 256

#: makes a body of the published events: a plain function (run in a thread) or a coroutine
#: function (which reads the store, then renders in a thread)
Render = Callable[[list[NetworkEvent]], Awaitable[Body] | Body]


class Outputs:
    """Rendered bodies, kept until the data changes.

    The in-process scheduler says so at once (invalidate); a change made by another process
    (`aggregator refresh` from cron, a second web process) is seen through the store's data
    version, looked at no more than once a second.
    """

    def __init__(self, store: Store, settings: Settings, poll_every: float = 1.0) -> None:
        self.store = store
        self.settings = settings
        self.poll_every = poll_every
        self._bodies: dict[str, Body] = {}
        self._events: list[NetworkEvent] | None = None
        self._version: int | None = None
        self._polled = float("-inf")
        self._lock = asyncio.Lock()
        #: bumped by every invalidation; what was read before one is never kept after it
        self._generation = 0
        #: read the published events with the garbage collector paused, and freeze them
        #: (web.serve, whose heap is frozen once started). A network's events are hundreds
        #: of thousands of objects, all alive: collections while they are read walk them
        #: again and again (pauses of 0.1-0.3 s that hold every thread), and frozen they are
        #: not walked by the full collections after. They are freed as ever when the next
        #: publish replaces them (nothing in them refers back to itself).
        self.freeze_kept = False
        self._reading = 0
        #: large bodies of before the last change, served until their new render is done
        self._previous: dict[str, Body] = {}
        #: the render of each body under way since the last change
        self._rendering: dict[str, asyncio.Task[Body]] = {}

    def invalidate(self) -> None:
        self._generation += 1
        self._previous.update((n, b) for n, b in self._bodies.items() if b.large)
        while len(self._previous) > KEPT_BODIES:  # the oldest filter goes first
            del self._previous[next(iter(self._previous))]
        self._bodies.clear()
        self._rendering.clear()
        self._events = None

    async def _poll(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._polled < self.poll_every:
            return
        self._polled = now
        generation = self._generation
        version = await self.store.data_version()
        # invalidated meanwhile (a publish of this process): what this read is older than
        # what is kept now, and the next poll looks again
        if generation == self._generation and version != self._version:
            self.invalidate()
            self._version = version

    async def events(self) -> list[NetworkEvent]:
        await self._poll()
        if self._events is not None:
            return self._events
        generation = self._generation
        # the version first: the events read are at least as new as it. So the poll after
        # an in-process publish (which invalidated already) finds this version and does not
        # throw away, and render again, what was read after that publish
        version = await self.store.data_version()
        events = await self._read_events()
        if generation == self._generation:  # no publish while we read: keep it
            self._events = events
            self._version = version
        return events

    async def _read_events(self) -> list[NetworkEvent]:
        """The published events; with `freeze_kept`, read with the garbage collector paused
        and then frozen (see there)."""
        if not self.freeze_kept:
            return await self.store.published_events()
        self._reading += 1
        gc.disable()
        try:
            return await self.store.published_events()
        finally:
            self._reading -= 1
            if not self._reading:  # the last of the reads at once
                gc.enable()
                gc.freeze()

    async def body(self, name: str, render: Render) -> Body:
        """The kept body `name`, rendered by `render` from the events when there is none;
        while it renders, a large one is the body of before the change (see the module).

        A `render` that is a plain function is CPU work: it runs in a thread. One that is a
        coroutine function reads the store first, and hands its own CPU work to a thread."""
        await self._poll()
        body = self._bodies.get(name)
        if body is not None:
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
                events = await self.events()
                started = time.perf_counter()
                if inspect.iscoroutinefunction(render):
                    body = await render(events)
                else:
                    body = await asyncio.to_thread(render, events)
                took = time.perf_counter() - started
                metrics.RENDER_SECONDS.labels(metrics.output_name(name)).observe(took)
                if generation == self._generation:
                    if len(self._bodies) >= KEPT_BODIES:  # the oldest filter goes first
                        del self._bodies[next(iter(self._bodies))]
                    self._bodies[name] = body
                    self._previous.pop(name, None)
            return body
