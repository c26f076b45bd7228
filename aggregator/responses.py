"""How the web server answers: kept bytes with a strong ETag (304 when it matches) and gzip
when the client takes it; pages and JSON that are made per request and never kept; and the
headers every response carries (no sniffing, the Referer policy, the pages' CSP)."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass

from aiohttp import web

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


@dataclass(frozen=True)
class Body:
    """A rendered output, kept until the data changes: its bytes, type and strong ETag."""

    data: bytes
    content_type: str
    etag: str
    #: gzip of data, made once (mtime 0, so the same data gives the same bytes)
    gzipped: bytes

    @classmethod
    def of(cls, data: bytes, content_type: str) -> Body:
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        return cls(data, content_type, etag, gzip.compress(data, mtime=0))


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
) -> web.Response:
    """Serve kept bytes: 304 when the ETag matches, gzip when the client takes it.
    `policy`: an HTML page's Content-Security-Policy (on its 304 too)."""
    gz = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    # strong ETags differ per encoding (RFC 9110 section 8.8.3)
    etag = body.etag[:-1] + '-gz"' if gz else body.etag
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={max_age}",
        "Vary": "Accept-Encoding",
    }
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    if policy:
        headers["Content-Security-Policy"] = policy
    match = {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}
    if etag in match or body.etag in match or "*" in match:
        return web.Response(status=304, headers=headers)
    content_type = f"{body.content_type}; charset=utf-8"
    if gz:
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=body.gzipped, headers={**headers, "Content-Type": content_type})
    return web.Response(body=body.data, headers={**headers, "Content-Type": content_type})


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


async def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors and 304s too (on_response_prepare): no MIME sniffing (a
    feed's text served as text/plain never runs as HTML or script), no full URL (with its
    filter) in the Referer sent to other sites, and a Server header without versions. An
    HTML page that set no policy (aiohttp's own error pages) gets the strict one."""
    headers = response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "strict-origin-when-cross-origin"
    headers["Server"] = SERVER
    if response.content_type == HTML and "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = FRAMED_POLICY
