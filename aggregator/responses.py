"""How the web server answers: kept bytes with a strong ETag (304 when it matches) and gzip
when the client takes it; pages and JSON that are made per request and never kept; and the
headers every response carries (no sniffing, the Referer policy, the pages' CSP).

A large kept body (a network's calendar is tens of MB) lives in an unlinked temporary file
and goes out with sendfile: it is not held in memory, nor copied into the buffer of every
connection that asks for it while the event loop does the copying."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import tempfile
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import must_be_empty_body

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


class KeptFile:
    """A file that holds a body's bytes (an unlinked temporary one, or one of the published
    folder), closed once nothing refers to it: not when its body is dropped, but when the
    last response sending it is done."""

    def __init__(self, *parts: bytes, file: BinaryIO | None = None) -> None:
        self.file: BinaryIO = file or tempfile.TemporaryFile(prefix="aggregator-body-")
        for part in parts:
            self.file.write(part)
        self.file.flush()
        self.fd = self.file.fileno()
        weakref.finalize(self, self.file.close)


class BodyWriter:
    """Writes a body as it is made, a part at a time: its bytes and their gzip into two
    files, hashed on the way (never the whole body in memory)."""

    def __init__(self, content_type: str, plain: BinaryIO, gzipped: BinaryIO) -> None:
        self.content_type = content_type
        self.plain, self.gzipped = plain, gzipped
        self._hash = hashlib.sha256()
        # filename "": the header names no file, as gzip.compress writes it
        self._gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=gzipped, compresslevel=GZIP_LEVEL, mtime=0
        )
        self.size = 0

    def write(self, data: bytes) -> None:
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
        return cls(
            content_type,
            tempfile.TemporaryFile(prefix="aggregator-body-"),
            tempfile.TemporaryFile(prefix="aggregator-body-"),
        )

    def body(self) -> Body:
        """finish() a temporary writer's files as a kept Body (in memory when small)."""
        etag = self.finish()
        gz_size = self.gzipped.tell()
        return Body.kept(self.content_type, etag, self.plain, self.size, self.gzipped, gz_size)


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
        thread, where hashlib and zlib let go of the GIL), and keep it."""
        etag = etag_of(hashlib.sha256(data))
        gz = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        if len(data) + len(gz) <= IN_MEMORY:
            return cls(content_type, etag, Payload(len(data), data), Payload(len(gz), gz))
        file = KeptFile(data, gz)
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
    ) -> Body:
        """A body whose bytes are in two files (written, flushed): read into memory when
        small (and the files closed), else sent from them."""
        if size + gz_size <= IN_MEMORY:
            with plain, gzipped:
                data, gz = os.pread(plain.fileno(), size, 0), os.pread(gzipped.fileno(), gz_size, 0)
            return cls(content_type, etag, Payload(size, data), Payload(gz_size, gz))
        return cls(
            content_type,
            etag,
            Payload(size, file=KeptFile(file=plain)),
            Payload(gz_size, file=KeptFile(file=gzipped)),
        )

    @cached_property
    def gzip_etag(self) -> str:
        """The gzipped bytes' own strong ETag."""
        return self.etag[:-1] + '-gz"'

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
    """A kept body's payload from its file, with sendfile (see the module's docstring)."""

    def __init__(self, payload: Payload, headers: dict[str, str]) -> None:
        super().__init__(headers=headers)
        self.payload = payload
        self.content_length = payload.size

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        writer = await super().prepare(request)  # a StreamResponse sends its headers at once
        if writer is None or must_be_empty_body(request.method, self.status):
            return writer
        payload, transport = self.payload, request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        try:
            await asyncio.get_running_loop().sendfile(
                transport, payload.file.file, payload.offset, payload.size
            )
        except NotImplementedError:
            fd = payload.file.fd
            for start in range(0, payload.size, CHUNK):
                size = min(CHUNK, payload.size - start)
                # pread: many responses read one file, none moves a shared position
                chunk = await asyncio.to_thread(os.pread, fd, size, payload.offset + start)
                await writer.write(chunk)
        await super().write_eof()
        return writer


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
) -> web.StreamResponse:
    """Serve kept bytes: 304 when the ETag matches, gzip when the client takes it.
    `policy`: an HTML page's Content-Security-Policy (on its 304 too); `extra`: more headers.

    The hot path of the server (a subscriber's calendar app asking whether anything
    changed): no more work than a comparison of the ETag and a few headers."""
    gz = _takes_gzip(request.headers.get("Accept-Encoding", ""))
    # strong ETags differ per encoding (RFC 9110 section 8.8.3)
    etag = body.gzip_etag if gz else body.etag
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
    asked = request.headers.get("If-None-Match")
    if asked is not None and (asked == etag or _matches(asked, etag, body.etag)):
        return web.StreamResponse(status=304, headers=headers)  # lighter than a Response
    if body.link:
        headers["Link"] = body.link
    if gz:
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = f"{body.content_type}; charset=utf-8"
    payload = body.gzipped if gz else body.plain
    if payload.data is not None:
        return web.Response(body=payload.data, headers=headers)
    return SentFile(payload, headers)


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
