"""/check: a member pastes a feed address (or uploads a file) and gets the report of
`aggregator check`, with nothing stored. Only public addresses are fetched, with a session of
its own, and each client may ask a few times in ten minutes."""

from __future__ import annotations

from datetime import datetime

from aiohttp import ClientSession, web

from aggregator.check import CheckReport, check_feed, read_body, uploaded
from aggregator.errors import Refused
from aggregator.fetch import Fetcher
from aggregator.guard import Guard
from aggregator.model import Settings
from aggregator.normalise import clean_url
from aggregator.quota import Quota
from aggregator.render.html import render_check
from aggregator.request import Networks, client_address, page_language, wants_json
from aggregator.responses import fresh_json, page


class Checker:
    """What /check fetches with: its own session, whose resolver refuses non-public
    addresses, and how often each client has asked lately."""

    #: checks per client in `PER` seconds
    RATE = 10
    PER = 600.0

    def __init__(self, guard: Guard, session: ClientSession) -> None:
        self.guard = guard
        self.session = session
        self.quota = Quota(self.RATE, self.PER)

    def wait(self, client: str, now: datetime) -> float:
        """Seconds until `client` may check again (0: now), counting this request."""
        return self.quota.wait(client, now)


async def answer_check(
    request: web.Request,
    settings: Settings,
    checker: Checker,
    now: datetime,
    proxies: Networks,
) -> web.Response:
    """The form, or the report of the feed at ?url= (or the uploaded file): a page, or JSON
    when asked for it. Refused and unreadable addresses are the member's typo: a 400 in
    words, never a 500."""
    as_json = wants_json(request, by_default=False)
    lang = page_language(request, settings.network.languages)
    # counted before the body is read: a client over its limit costs no upload
    if request.method == "POST" or str(request.query.get("url") or "").strip():
        wait = checker.wait(client_address(request, proxies), now)
        if wait > 0:
            raise web.HTTPTooManyRequests(
                text=f"too many checks from your address; try again in {wait:.0f} s\n",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
    try:
        form = await request.post() if request.method == "POST" else request.query
    except ValueError as error:  # a multipart body that is not one
        raise web.HTTPBadRequest(text=f"could not read the form: {error}\n") from None
    url = str(form.get("url") or "").strip()
    upload = form.get("file")
    if not url and not getattr(upload, "file", None):
        if as_json:
            raise web.HTTPBadRequest(text="give a feed address as ?url=, or upload a file\n")
        return page(render_check(settings, lang=lang))
    try:
        report = await _check(url, upload, settings, checker, now)
    except (Refused, ValueError, UnicodeError) as error:
        # an address that slipped past _malformed and failed deeper (yarl, the IDNA codec)
        # is still the member's typo
        message = (
            error.message
            if isinstance(error, Refused)
            else f"{url or 'the file'} could not be read as a feed address: {error}"
        )
        if as_json:
            return web.json_response({"error": message}, status=400)
        return page(render_check(settings, lang=lang, refused=message), status=400)
    if as_json:
        return fresh_json({"target": report.target, **report.as_json()})
    return page(render_check(settings, report, lang=lang))


async def _check(
    url: str, upload, settings: Settings, checker: Checker, now: datetime
) -> CheckReport:
    """Fetch and read the feed at `url`, or read the uploaded file. Raises Refused."""
    limits = settings.limits
    fetcher = Fetcher(checker.session, limits, check_url=checker.guard.check_url)
    if url:
        malformed = _malformed(url)
        if malformed:
            raise Refused(malformed)
        return await check_feed(url, fetcher, settings.network, limits, now)
    body = upload.file.read(limits.max_bytes + 1)
    if len(body) > limits.max_bytes:
        raise Refused(f"the file is larger than {limits.max_bytes} bytes")
    name = upload.filename or "upload"
    return await read_body(uploaded(body, name), name, fetcher, settings.network, limits, now)


def _malformed(url: str) -> str | None:
    """Why `url` is not an address /check can fetch, or None: checked before any name is
    looked up, so a typo is answered in words and costs no DNS query."""
    if not url.isprintable():
        return f"{url!r} has control characters in it; paste the address alone"
    scheme, sep, rest = url.partition("://")
    # webcal:// is https:// by convention (fetch reads it so)
    probe = f"https://{rest}" if sep and scheme.lower() == "webcal" else url
    if clean_url(probe) is None:
        return (
            f"{url!r} is not a valid web address (a host name, an optional port up to 65535); "
            "only http, https and webcal addresses can be checked"
        )
    return None
