"""The access log of `serve`: one short line per request, written off the event loop.

    on the event loop, per request (LeanAccessLogger.log):
        (time, client, method, path with query, status, bytes, seconds) -> `waiting`
        (when LIMIT lines are held already: dropped and counted instead, never waiting)
    on the event loop, every MAKE_S seconds (AccessLog.make, a callback):
        the entries waiting -> lines (escaped, the path cut at MAX_PATH), CHUNK at a time,
        each chunk a callback of its own between the requests' -> `made`
    in the writer thread, every INTERVAL seconds (AccessLog):
        the chunks made -> one write and one flush of the stream; "N lines dropped"

aiohttp's own AccessLogger formats its line with a dozen small functions and hands it to
`logging` on the event loop (a record, a lock, a write and a flush per request): more than
half the time of a 304 (10.1k requests/s with it, 24.5k without, issue 25). Measured on
the 2-core machine, in CPU per 304 (about 37 microseconds with no log at all):

- a line made per request on the loop cost 8 microseconds, most of it in what its cold
  code evicted from the CPU's caches; the fields read into a tuple cost 1;
- lines made by the thread cost the loop more than their own time: each time the thread
  takes the GIL, the loop waits until the OS runs it, and with wrk on both cores that is
  milliseconds. The thread only writes (the GIL let go); the lines are made on the loop,
  warm, half a microsecond each, a few hundred at a time between requests;
- entries held for half a second (3 MB at 25,000 a second) cost each 304 another
  microsecond in memory no longer in the cache: they are made into lines every MAKE_S.

In all, 2 to 3 microseconds of a 304's 39 to 48: bench/serve.py on 2026-12-08 (after its
mix) had a 304 at 0.78x to 0.82x a bare aiohttp handler's rate with the log, 0.84x to 0.86x
without it (at 200 and 1,000 members; earlier runs 0.81x to 0.87x and 0.86x to 0.93x).

A line reads like the other lines of `serve`'s log (logging's default format there) and
says, in order: when the answer was sent, the client's address (the peer: behind a proxy
the proxy, which logs the client itself), method, path with query as sent (at most
MAX_PATH characters, then "..."), status, bytes sent (headers and body, as aiohttp counts
them; responses.SentFile adds what it sent with sendfile), and milliseconds from the
request to its answer:

    2026-05-09 22:39:19,123 INFO aiohttp.access: 127.0.0.1 GET /calendar.ics?days=7 304 359 0.21ms

A client's text cannot forge a line: control characters (line breaks of any kind
included), spaces and backslashes of the method, path and address are written escaped
(`\\x0d\\x0a`). Must not touch: the request or the response (it reads a few attributes).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
import time
from typing import ClassVar, TextIO

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

#: seconds between two writes of the thread (a line is written within this and MAKE_S, when
#: the stream keeps up)
INTERVAL = 0.5
#: seconds between two batches of lines made on the loop: the entries of a few hundred
#: requests, not of half a second (see above)
MAKE_S = 0.02
#: lines held at most, waiting to be made or written (a line about 100 bytes, 3 MB); beyond
#: (at 65,000 requests a second), or when the stream takes nothing, lines are dropped
LIMIT = 32_768
#: characters of the path (with its query) written; a longer one ends with "..."
MAX_PATH = 512
#: lines made at a time on the loop (about 150 microseconds)
CHUNK = 256
#: seconds close() waits for the last write (a stream that takes nothing loses it)
CLOSE_S = 5.0

#: what a line's fields must not hold as they are: C0 and C1 controls (\n, \r, \v, \f,
#: \x1c-\x1e and \x85 break lines for str.splitlines; ESC starts a terminal's sequences), DEL,
#: the Unicode line and paragraph separators, the space that separates fields, and the
#: backslash that starts an escape
_ESCAPED = (*range(0x21), 0x7F, *range(0x80, 0xA0), 0x5C, 0x2028, 0x2029)
_ESCAPES = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" for code in _ESCAPED}
#: the ",mmm" of a line's time; numbers below 1,000 (statuses, sizes of 304s); durations
#: below 10 ms by 10 microseconds: looked up, not formatted
_MILLISECONDS = [f",{ms:03d}" for ms in range(1000)]
_NUMBERS = [str(n) for n in range(1000)]
_DURATIONS = [f"{n / 100:.2f}ms" for n in range(1000)]
#: methods that need no escape
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "UNKNOWN"))


#: a request's (time.time(), client as written, method, path with query, status, bytes,
#: seconds taken)
Entry = tuple[float, str, str, str, int, int, float]


def escaped(text: str) -> str:
    """`text` with what could break or forge a line written as escapes."""
    return text.translate(_ESCAPES)


def _plain(text: str) -> bool:
    """Whether `text` has nothing _ESCAPES would change (for ASCII text: quick tests in C)."""
    return text.isascii() and text.isprintable() and " " not in text and "\\" not in text


class AccessLog:
    """Lines on their way to `stream`: entries waiting (the loop's), lines made of them in
    chunks (on the loop, `make`), written by a background thread every `interval` seconds.

    `add` never waits: when `limit` lines are held (waiting, or made and not yet taken by
    the thread), the line is dropped and counted in `dropped`, and the thread says how many
    when it writes next. `close` (from the loop's thread, or once the loop has stopped)
    makes and writes what is held, and stops the thread."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        limit: int = LIMIT,
        interval: float = INTERVAL,
        make_s: float = MAKE_S,
    ) -> None:
        self.stream = stream if stream is not None else log_stream()
        self.limit = limit
        self.interval = interval
        self.make_s = make_s
        #: lines dropped because `limit` were held (the stream did not keep up)
        self.dropped = 0
        self._told = 0
        #: the entries not made into lines yet (the loop's)
        self.waiting: collections.deque[Entry] = collections.deque()
        #: chunks of lines made, with how many lines each, for the thread
        self._made: collections.deque[tuple[str, int]] = collections.deque()
        #: lines made (counted by the loop) and taken by the thread (counted by it): each
        #: count has one writer, so no lock
        self.made_count = 0
        self.taken_count = 0
        #: the loop that makes the lines, once its first line is added
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next: asyncio.TimerHandle | None = None
        # logging's asctime of the second the last line was in (local time)
        self._second = 0
        self._second_text = ""
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def held(self) -> int:
        """Lines waiting to be made or written."""
        return len(self.waiting) + self.made_count - self.taken_count

    def add(self, entry: Entry) -> None:
        """Queue one request's entry (on the event loop); dropped (and counted) when `limit`
        lines are held. Never blocks."""
        waiting = self.waiting
        if len(waiting) + self.made_count - self.taken_count >= self.limit:
            self.dropped += 1
            return
        waiting.append(entry)
        if self._loop is None:
            self.start()

    def start(self) -> None:
        """Make lines on the running loop from now on, every `make_s` seconds (none
        running: close() makes them)."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._next = self._loop.call_later(self.make_s, self.make)

    def make(self) -> None:
        """On the loop: a chunk of lines made of the entries waiting; the next chunk soon
        (after the callbacks ready, requests' among them), or in `make_s` seconds."""
        waiting = self.waiting
        if waiting:
            self._make_chunk()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            if waiting:
                self._next = None
                loop.call_soon(self.make)
            else:
                self._next = loop.call_later(self.make_s, self.make)

    def close(self, timeout: float = CLOSE_S) -> None:
        """Make and write the lines held, and stop the thread (giving up after `timeout`
        seconds). From the loop's thread, or once the loop has stopped."""
        if self._next is not None:
            self._next.cancel()
        self._loop = None  # a make() still scheduled makes its chunk and stops there
        while self.waiting:
            self._make_chunk()
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)

    def _make_chunk(self) -> None:
        waiting = self.waiting
        count = min(len(waiting), CHUNK)
        self._made.append((self._lines(waiting, count), count))
        self.made_count += count

    def _lines(self, waiting: collections.deque[Entry], count: int) -> str:
        """The lines of the first `count` entries waiting, taken from the deque."""
        pop = waiting.popleft
        lines: list[str] = []
        append = lines.append
        second, second_text = self._second, self._second_text
        last: tuple = ()
        middle = ""
        for _ in range(count):
            entry = pop()
            at, seconds = entry[0], entry[6]
            if not second <= at < second + 1:  # a new second (or the clock was set back)
                second = int(at)
                second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            fields = entry[1:6]  # client, method, path, status, size: often the last line's
            if fields != last:
                middle, last = _middle(*fields), fields
            took = int(seconds * 100_000)
            append(
                f"{second_text}{_MILLISECONDS[int((at - second) * 1000)]} INFO aiohttp.access:"
                f" {middle} {_DURATIONS[took] if took < 1000 else f'{seconds * 1000:.2f}ms'}\n"
            )
        self._second, self._second_text = second, second_text
        return "".join(lines)

    def _run(self) -> None:
        while True:
            closing = self._closing  # read first: what was made before close() is written
            try:
                self._write_made()
            except Exception:  # noqa: BLE001 - a stream that fails must not end the log
                logging.getLogger(__name__).exception("the access log could not be written")
            if closing:
                return
            self._wake.wait(self.interval)

    def _write_made(self) -> None:
        """The thread's: take the chunks made and write them in one piece (the GIL let go
        while it writes)."""
        made = self._made
        pop = made.popleft
        chunks = []
        for _ in range(len(made)):
            text, count = pop()
            chunks.append(text)
            self.taken_count += count
        dropped = self.dropped
        if dropped != self._told:
            now = time.time()
            chunks.append(
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}"
                f"{_MILLISECONDS[int(now % 1 * 1000)]} WARNING {__name__}: "
                f"{dropped - self._told} lines dropped: the log's stream did not keep up\n"
            )
            self._told = dropped
        if chunks:
            self.stream.write("".join(chunks))
            self.stream.flush()


def _middle(client: str, method: str, path: str, status: int, size: int) -> str:
    """A line's client, method, path (escaped, cut), status and bytes."""
    if method not in _METHODS:
        method = escaped(method)
    if len(path) > MAX_PATH:
        path = escaped(path[:MAX_PATH]) + "..."
    elif not _plain(path):
        path = escaped(path)
    return (
        f"{client} {method} {path} {_NUMBERS[status] if 0 <= status < 1000 else status}"
        f" {_NUMBERS[size] if size < 1000 else size}"
    )


def log_stream() -> TextIO:
    """Where the access log goes: the stream of the first stream handler that aiohttp's
    access logger reaches (the root's, which `aggregator serve` sets up on stderr), else
    stderr."""
    logger: logging.Logger | None = logging.getLogger("aiohttp.access")
    while logger is not None:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is not None:
                return handler.stream
        logger = logger.parent if logger.propagate else None
    return sys.stderr


class LeanAccessLogger(AbstractAccessLogger):
    """aiohttp's access logger, made once per connection: hands each request's fields to
    the process's AccessLog (`writing_to` makes the class that does). The client's address
    is the connection's: read (and escaped) at its first request.

    The fields are read from aiohttp's private attributes (the request's parsed message,
    the response's status and length) when the first request of the process finds them
    the same as the public properties (`fast`); else from the properties, a microsecond
    more."""

    __slots__ = ("_client",)
    lines: ClassVar[AccessLog]
    #: the private attributes give what the properties do (None: not checked yet)
    fast: ClassVar[bool | None] = None

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._client: str | None = None

    @classmethod
    def writing_to(cls, lines: AccessLog) -> type[LeanAccessLogger]:
        """The access logger class whose instances hand their lines to `lines`."""
        return type("LeanAccessLogger", (cls,), {"__slots__": (), "lines": lines})

    @property
    def enabled(self) -> bool:
        return True

    def log(self, request: BaseRequest, response: StreamResponse, time_taken: float) -> None:
        client = self._client
        if client is None:  # request.remote alone took a sixth of a line's time
            client = request.remote
            client = "-" if client is None else client if _plain(client) else escaped(client)
            self._client = client
        lines = self.lines
        waiting = lines.waiting  # AccessLog.add, without the call
        if len(waiting) + lines.made_count - lines.taken_count >= lines.limit:
            lines.dropped += 1
            return
        if lines._loop is None:
            lines.start()
        fast = LeanAccessLogger.fast
        if fast is None:
            fast = LeanAccessLogger.fast = _same_fields(request, response)
        if fast:
            message = request._message
            waiting.append(
                (
                    time.time(),
                    client,
                    message.method,
                    message.path,
                    response._status,
                    response._body_length,
                    time_taken,
                )
            )
        else:
            waiting.append(
                (
                    time.time(),
                    client,
                    request.method,
                    request.raw_path,
                    response.status,
                    response.body_length,
                    time_taken,
                )
            )


def _same_fields(request: BaseRequest, response: StreamResponse) -> bool:
    """The fast path's self-check: whether aiohttp's private attributes hold the method,
    path, status and length that its public properties give."""
    try:
        message = request._message
        fast = (message.method, message.path, response._status, response._body_length)
    except AttributeError:
        return False
    return fast == (request.method, request.raw_path, response.status, response.body_length)
