"""How the web server answers: kept bytes with a strong ETag (304 when it matches) and gzip
when the client takes it; pages and JSON that are made per request and never kept; and the
headers every response carries (no sniffing, the Referer policy, the pages' CSP).

A large kept body (a network's calendar is tens of MB) lives in an unlinked temporary file
and goes out with sendfile: it is not held in memory, nor copied into the buffer of every
connection that asks for it while the event loop does the copying.

Whatever a client does, what it holds is bounded: every temporary file of a body counts
against the disk `Budget` of the render that wrote it, from its first byte until the last
response sending it is done; and a client that stops reading is let go (`SentFile` sends in
pieces, each within `send_timeout`; `Stalled` aborts the other connections whose answer
stopped moving)."""

from __future__ import annotations

import asyncio
import contextvars
import gzip
import hashlib
import json
import os
import socket
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import must_be_empty_body
from multidict import CIMultiDict

from aggregator.render.html import STYLE_HASH

ICS = "text/calendar"
ATOM = "application/atom+xml"
JSON = "application/json"
HTML = "text/html"
#: the Server header: a name, no versions to match against a list of known holes
SERVER = "aggregator"
#: every HTML page: our own files only, no inline script, the one inline <style> by its
#: hash, forms sent only to us, no <base> or plugins
PAGE_POLICY = (
    f"default-src 'self'; style-src 'self' {STYLE_HASH}; object-src 'none'; "
    "base-uri 'none'; form-action 'self'"
)
#: the page to embed (/) may be framed by any site (members' and the umbrella's websites);
#: every other page only by our own
FRAMED_POLICY = f"{PAGE_POLICY}; frame-ancestors 'self'"
#: what every response says (secure_headers); answer() writes them at once
SECURE = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Server": SERVER,
}
#: a body (with its gzip) larger than this is kept in a file, smaller ones in memory
IN_MEMORY = 256 * 1024
#: zlib's default: level 9 took 1.8x as long on a calendar of 24 MB for 2% fewer bytes
GZIP_LEVEL = 6
#: a file sent without sendfile (a transport that has none, such as TLS) goes in chunks
CHUNK = 256 * 1024
#: a file goes out with sendfile this much at a time, each piece within the send timeout: a
#: client must take 4 MiB a minute (70 KB/s) or be let go
SEND_PIECE = 4 * 1024 * 1024
#: a file's first bytes, sent corked with the headers (one segment, not a small one for the
#: headers first): a few segments, no more. Corked, a piece of megabytes left only once it
#: was all written: a body of 13 MB went at 0.8x the speed it had without (0.95x)
CORKED = 64 * 1024
#: Linux's TCP_CORK (0 elsewhere: _cork does nothing)
TCP_CORK = getattr(socket, "TCP_CORK", 0)
#: seconds a client may take no bytes of an answer before its connection is let go
SEND_TIMEOUT = 60.0
#: the application's own (outputs.send_timeout), read by answer() for a file's pieces
SEND_TIMEOUT_KEY = web.AppKey("send_timeout", float)


class OverBudget(Exception):
    """A body would take more disk than its budget has left: its render is refused."""


class Budget:
    """Bytes of disk held by the temporary files of bodies (rendered on demand, kept, or
    being sent): taken as they are written, given back when the last reference to the file
    is gone. `make_room(n)` is asked to let go of n bytes (kept bodies) before a take fails."""

    def __init__(self, limit: int, make_room: Callable[[int], None] = lambda _n: None) -> None:
        self.limit = limit
        self.held = 0
        self.make_room = make_room

    def take(self, size: int) -> None:
        """Count `size` more bytes; OverBudget (nothing counted) when they do not fit."""
        if self.held + size > self.limit:
            self.make_room(self.held + size - self.limit)
            if self.held + size > self.limit:
                raise OverBudget(
                    f"{self.held + size:,} bytes of rendered bodies would exceed the disk budget"
                    f" of {self.limit:,}"
                )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


#: the budget the bodies written in this context count against (outputs.Outputs sets it
#: for its renders; None: not counted, as the published folder's files are not)
BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


class Held:
    """The bytes one body's files hold against a budget, given back when nothing refers to
    them any more (the body dropped, the responses sending it done, or its render failed)."""

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self._count = [0]
        if budget is not None:
            weakref.finalize(self, _give_back, budget, self._count)

    @property
    def count(self) -> int:
        return self._count[0]

    def take(self, size: int) -> None:
        if self.budget is not None and size > 0:
            self.budget.take(size)
            self._count[0] += size

    def release(self) -> None:
        """Give the bytes back now: their files are closed."""
        if self.budget is not None:
            self.budget.give(self._count[0])
        self._count[0] = 0


def _give_back(budget: Budget, count: list[int]) -> None:
    budget.give(count[0])


class KeptFile:
    """A file that holds a body's bytes (an unlinked temporary one, or one of the published
    folder), closed once nothing refers to it: not when its body is dropped, but when the
    last response sending it is done. A temporary one's bytes count against the budget
    (`held`) until then."""

    def __init__(
        self, *parts: bytes, file: BinaryIO | None = None, held: Held | None = None
    ) -> None:
        self.held = held or Held(None)
        self.held.take(sum(len(part) for part in parts))  # OverBudget before a byte is written
        self.file: BinaryIO = file or tempfile.TemporaryFile(prefix="aggregator-body-")
        for part in parts:
            self.file.write(part)
        self.file.flush()
        self.fd = self.file.fileno()
        weakref.finalize(self, self.file.close)


class BodyWriter:
    """Writes a body as it is made, a part at a time: its bytes and their gzip into two
    files, hashed on the way (never the whole body in memory). A temporary writer's bytes
    count against the context's BUDGET as they are written: a render that outgrows it fails
    with OverBudget, and its files are let go."""

    def __init__(
        self, content_type: str, plain: BinaryIO, gzipped: BinaryIO, held: Held | None = None
    ) -> None:
        self.content_type = content_type
        self.plain, self.gzipped = plain, gzipped
        self.held = held or Held(None)
        self._hash = hashlib.sha256()
        # filename "": the header names no file, as gzip.compress writes it
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=gzipped, compresslevel=GZIP_LEVEL, mtime=0
        )
        self.size = 0

    def write(self, data: bytes) -> None:
        held = self.held
        if held.budget is not None:  # the plain bytes before they are written, their gzip after
            try:
                held.take(self.size + len(data) + self.gzipped.tell() - held.count)
            except OverBudget:
                # the render fails: its files go now, whoever still refers to this writer
                self.plain.close()
                self.gzipped.close()
                held.release()
                raise
        self.plain.write(data)
        self._hash.update(data)
        self._gzip.write(data)
        self.size += len(data)

    def finish(self) -> str:
        """Flush both files; the body's strong ETag."""
        self._gzip.close()
        self.plain.flush()
        self.gzipped.flush()
        return etag_of(self._hash)

    @classmethod
    def temporary(cls, content_type: str) -> BodyWriter:
        """A writer into two unlinked temporary files, counted against BUDGET."""
        return cls(
            content_type,
            tempfile.TemporaryFile(prefix="aggregator-body-"),
            tempfile.TemporaryFile(prefix="aggregator-body-"),
            Held(BUDGET.get()),
        )

    def body(self) -> Body:
        """finish() a temporary writer's files as a kept Body (in memory when small)."""
        etag = self.finish()
        gz_size = self.gzipped.tell()
        self.held.take(self.size + gz_size - self.held.count)
        return Body.kept(
            self.content_type, etag, self.plain, self.size, self.gzipped, gz_size, self.held
        )


def etag_of(digest: hashlib._Hash) -> str:
    return '"' + digest.hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Payload:
    """One encoding of a kept body: its bytes, or where they are in the body's file."""

    size: int
    data: bytes | None = None
    file: KeptFile | None = None
    offset: int = 0


@dataclass(frozen=True, eq=False)
class Body:
    """A rendered output, kept until the data changes: its type, strong ETag, and bytes as
    they are and gzipped (mtime 0, so the same data gives the same bytes)."""

    content_type: str
    etag: str
    plain: Payload
    gzipped: Payload
    #: a Link header it goes with (the next page of /events.json)
    link: str | None = None

    @classmethod
    def of(cls, data: bytes, content_type: str) -> Body:
        """Hash and gzip the data (seconds for a large network's calendar: call this from a
        thread, where hashlib and zlib let go of the GIL), and keep it (a large one in a
        file counted against the context's BUDGET)."""
        etag = etag_of(hashlib.sha256(data))
        gz = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        if len(data) + len(gz) <= IN_MEMORY:
            return cls(content_type, etag, Payload(len(data), data), Payload(len(gz), gz))
        file = KeptFile(data, gz, held=Held(BUDGET.get()))
        return cls(
            content_type,
            etag,
            Payload(len(data), file=file),
            Payload(len(gz), file=file, offset=len(data)),
        )

    @classmethod
    def kept(
        cls,
        content_type: str,
        etag: str,
        plain: BinaryIO,
        size: int,
        gzipped: BinaryIO,
        gz_size: int,
        held: Held | None = None,
    ) -> Body:
        """A body whose bytes are in two files (written, flushed): read into memory when
        small (and the files closed), else sent from them (`held`: what they count against
        a budget, kept as long as either file)."""
        if size + gz_size <= IN_MEMORY:
            with plain, gzipped:
                data, gz = os.pread(plain.fileno(), size, 0), os.pread(gzipped.fileno(), gz_size, 0)
            return cls(content_type, etag, Payload(size, data), Payload(gz_size, gz))
        return cls(
            content_type,
            etag,
            Payload(size, file=KeptFile(file=plain, held=held)),
            Payload(gz_size, file=KeptFile(file=gzipped, held=held)),
        )

    @cached_property
    def gzip_etag(self) -> str:
        """The gzipped bytes' own strong ETag."""
        return self.etag[:-1] + '-gz"'

    @cached_property
    def not_modified(self) -> dict[tuple, tuple[Mapping[str, str] | None, CIMultiDict[str]]]:
        """answer()'s 304 headers, by its arguments (gzip, cors, max_age, policy, id of
        extra): the same for every 304 of this body, made once (with the `extra` they were
        made with: an id is another's once its object is gone)."""
        return {}

    @property
    def large(self) -> bool:
        """Kept in a file (over IN_MEMORY): a large network's calendar, seconds to render."""
        return self.plain.data is None

    @property
    def data(self) -> bytes:
        """The bytes as they are (read from the file when kept in one)."""
        return _read(self.plain)


def _read(payload: Payload) -> bytes:
    if payload.data is not None:
        return payload.data
    return os.pread(payload.file.fd, payload.size, payload.offset)


class SentFile(web.StreamResponse):
    """A kept body's payload from its file, with sendfile (see the module's docstring), a
    piece at a time: a client that takes no piece within `timeout` seconds is let go (its
    connection aborted), and with it the file it held.

    What the socket takes at once goes first, from here (`sent_now`), its first CORKED
    bytes corked with the headers (TCP_CORK); asyncio's sendfile only sends the rest. Each
    of its calls pauses the connection's reading and resumes it, waits for the transport to
    be empty, and registers and unregisters a writer: with a timeout's task per piece (and
    the headers in a segment of their own), a gzipped calendar of 300 KB went at 0.42x the
    speed of a bare aiohttp handler writing it from memory, one of 5.6 MB at 0.78x."""

    def __init__(
        self, payload: Payload, headers: dict[str, str], timeout: float = SEND_TIMEOUT
    ) -> None:
        super().__init__(headers=headers)
        self.payload = payload
        self.timeout = timeout
        self.content_length = payload.size

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        payload, transport = self.payload, request.transport
        loop = asyncio.get_running_loop()
        # asyncio's own loop (one whose sendfile was replaced sends files its way), a socket
        # in clear (TLS: its socket takes no clear text)
        native = getattr(loop.sendfile, "__func__", None) is asyncio.BaseEventLoop.sendfile
        sock = _clear_socket(transport) if native else None
        corked = min(payload.size, CORKED)
        if sock is not None:
            _cork(sock, True)
        try:
            writer = await super().prepare(request)  # a StreamResponse sends its headers now
            if writer is None or must_be_empty_body(request.method, self.status):
                return writer
            if transport is None:
                raise ConnectionResetError("Connection lost")
            first = payload.offset
            if sock is not None:
                first += sent_now(transport, sock, payload.file.fd, first, corked)
        finally:
            if sock is not None:
                _cork(sock, False)
        end = payload.offset + payload.size
        if sock is not None and first == payload.offset + corked < end:
            # the rest of a first piece, uncorked: it leaves while it is written
            size = min(end - first, SEND_PIECE)
            first += sent_now(transport, sock, payload.file.fd, first, size)
        sent = first - payload.offset  # with sendfile: aiohttp's writer counts none of them
        try:
            try:
                for start in range(first, end, SEND_PIECE):
                    size = min(SEND_PIECE, end - start)
                    async with asyncio.timeout(self.timeout):  # no task, unlike wait_for
                        sent += await loop.sendfile(transport, payload.file.file, start, size)
            except NotImplementedError:  # no sendfile on this transport (TLS)
                fd = payload.file.fd
                for start in range(first, end, CHUNK):
                    size = min(CHUNK, end - start)
                    # pread: many responses read one file, none moves a shared position
                    chunk = await asyncio.to_thread(os.pread, fd, size, start)
                    async with asyncio.timeout(self.timeout):
                        await writer.write(chunk)
            if transport.get_write_buffer_size():
                async with asyncio.timeout(self.timeout):
                    await super().write_eof()
            else:  # nothing waits to be sent: no timer to set and cancel
                await super().write_eof()
            self._body_length += sent  # body_length (the access log's bytes): its body too
        except TimeoutError:
            transport.abort()
            raise ConnectionResetError(
                f"the client took no bytes in {self.timeout:.0f} s: let go"
            ) from None
        return writer


def _clear_socket(transport: asyncio.BaseTransport | None) -> socket.socket | None:
    """The connection's socket when it carries clear text (not TLS), else None."""
    if transport is None or transport.get_extra_info("sslcontext") is not None:
        return None
    if transport.get_extra_info("ssl_object") is not None:
        return None
    return transport.get_extra_info("socket")


def _cork(sock: socket.socket, on: bool) -> None:
    """TCP_CORK on (hold what is written until a full segment) or off (send it now)."""
    if not TCP_CORK:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_CORK, on)
    except OSError:
        pass  # gone, or not TCP: nothing to hold


def sent_now(
    transport: asyncio.BaseTransport, sock: socket.socket, fd: int, offset: int, count: int
) -> int:
    """Bytes of the file `fd` (`count` from `offset`) that the connection's socket (clear
    text) takes at once, sent with sendfile from here, never waiting; 0 when the transport
    has bytes of its own waiting or is closing. asyncio's sendfile sends the rest."""
    if transport.is_closing() or transport.get_write_buffer_size():
        return 0
    sent = 0
    try:
        while sent < count:
            n = os.sendfile(sock.fileno(), fd, offset + sent, count - sent)
            if n == 0:
                break
            sent += n
    except (BlockingIOError, InterruptedError):
        pass  # the socket's buffer is full: the rest waits for it
    except OSError:
        pass  # the connection is gone: asyncio's sendfile says so
    return sent


class Stalled:
    """The connections whose answers are waiting in their transport's buffer (every answer
    but a file's, which `SentFile` times itself): one whose buffer has not shrunk for
    `timeout` seconds is aborted, so a client that never reads holds no memory, and no
    handler, for long. `watch` at each answer (cheap: a dict entry per connection, weakly
    held), `sweep` every few seconds."""

    def __init__(self, timeout: float = SEND_TIMEOUT) -> None:
        self.timeout = timeout
        #: transport -> (bytes waiting in its buffer, since when)
        self._seen: weakref.WeakKeyDictionary[asyncio.Transport, tuple[int, float]] = (
            weakref.WeakKeyDictionary()
        )

    def watch(self, transport: asyncio.Transport | None) -> None:
        if transport is not None and transport not in self._seen:
            self._seen[transport] = (0, time.monotonic())

    def sweep(self, now: float | None = None) -> int:
        """Abort the connections stalled for `timeout`; how many."""
        now = time.monotonic() if now is None else now
        aborted = 0
        for transport, (waiting, since) in list(self._seen.items()):
            if transport.is_closing() and transport.get_write_buffer_size() == 0:
                self._seen.pop(transport, None)
                continue
            pending = transport.get_write_buffer_size()
            if pending == 0 or pending != waiting:  # nothing waits, or the client took some
                self._seen[transport] = (pending, now)
            elif now - since >= self.timeout:
                transport.abort()
                self._seen.pop(transport, None)
                aborted += 1
        return aborted

    def __len__(self) -> int:
        return len(self._seen)


def accepts_gzip(header: str) -> bool:
    """Whether Accept-Encoding takes gzip (RFC 9110 section 12.5.3: 'gzip;q=0' refuses it)."""
    for part in header.split(","):
        token, *params = (p.strip() for p in part.split(";"))
        if token.lower() != "gzip":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


def answer(
    request: web.Request,
    body: Body,
    *,
    cors: bool = True,
    max_age: int = 300,
    policy: str | None = None,
    extra: Mapping[str, str] | None = None,
    timeout: float = SEND_TIMEOUT,
) -> web.StreamResponse:
    """Serve kept bytes: 304 when the ETag matches, gzip when the client takes it.
    `policy`: an HTML page's Content-Security-Policy (on its 304 too); `extra`: more headers;
    `timeout`: a file's piece must be taken within it.

    The hot path of the server (a subscriber's calendar app asking whether anything
    changed): no more work than a comparison of the ETag and a few headers."""
    gz = _takes_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    # strong ETags differ per encoding (RFC 9110 section 8.8.3)
    etag = body.gzip_etag if gz else body.etag
    asked = request.headers.get(hdrs.IF_NONE_MATCH)
    if asked is not None and (asked == etag or _matches(asked, etag, body.etag)):
        # the headers kept: building them was a tenth of a 304's time in the process, and a
        # CIMultiDict is copied into the response in C (a StreamResponse is lighter than a
        # Response)
        key = (gz, cors, max_age, policy, id(extra))
        kept = body.not_modified.get(key)
        if kept is None or kept[0] is not extra:
            headers = _headers(etag, cors, max_age, policy, extra)
            kept = body.not_modified[key] = (extra, CIMultiDict(headers))
        return web.StreamResponse(status=304, headers=kept[1])
    headers = _headers(etag, cors, max_age, policy, extra)
    if body.link:
        headers["Link"] = body.link
    if gz:
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = f"{body.content_type}; charset=utf-8"
    payload = body.gzipped if gz else body.plain
    if payload.data is not None:
        return web.Response(body=payload.data, headers=headers)
    return SentFile(payload, headers, request.config_dict.get(SEND_TIMEOUT_KEY, timeout))


def _headers(
    etag: str, cors: bool, max_age: int, policy: str | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    """What an answer of kept bytes says, its 304 too."""
    headers = {
        **SECURE,
        "ETag": etag,
        "Cache-Control": f"public, max-age={max_age}",
        "Vary": "Accept-Encoding",
    }
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    if policy:
        headers["Content-Security-Policy"] = policy
    if extra:
        headers.update(extra)
    return headers


def _matches(asked: str, *etags: str) -> bool:
    """Whether If-None-Match names one of the ETags (or is '*')."""
    named = {tag.strip() for tag in asked.split(",")}
    return "*" in named or not named.isdisjoint(etags)


#: Accept-Encoding values met, and whether each takes gzip (clients send a handful of forms)
_GZIP_TAKEN: dict[str, bool] = {}


def _takes_gzip(header: str) -> bool:
    taken = _GZIP_TAKEN.get(header)
    if taken is None:
        taken = accepts_gzip(header)
        if len(_GZIP_TAKEN) < 256:
            _GZIP_TAKEN[header] = taken
    return taken


def page(text: str, status: int = 200) -> web.Response:
    """An HTML page made for this request: never kept, framed only by our own pages."""
    return web.Response(
        text=text,
        status=status,
        content_type=HTML,
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": FRAMED_POLICY},
    )


def fresh_json(value: object) -> web.Response:
    """JSON read now (a source's state): any site may read it, a cache must ask again."""
    return web.Response(
        body=dumps(value),
        content_type=JSON,
        charset="utf-8",
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"},
    )


def dumps(value: object) -> bytes:
    """JSON as every output writes it: UTF-8, indented, a newline at the end."""
    return json.dumps(value, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"


def secure_headers(response: web.StreamResponse) -> None:
    """On every response, errors and 304s too (on_response_prepare): no MIME sniffing (a
    feed's text served as text/plain never runs as HTML or script), no full URL (with its
    filter) in the Referer sent to other sites, and a Server header without versions. An
    HTML page that set no policy (aiohttp's own error pages) gets the strict one."""
    headers = response.headers
    if "X-Content-Type-Options" in headers:  # made by answer(), with all of them
        return
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    headers["Server"] = SERVER
    if response.content_type == HTML and "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = FRAMED_POLICY
