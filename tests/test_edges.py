"""The outputs at the calendar's edges (issue 25), over real HTTP on a refreshed demo
network: a date or a cursor no calendar holds is a 400 naming its parameter, never a 500
from a datetime that overflows."""

from __future__ import annotations

import base64
import html
import re
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.fetch import Fetcher
from aggregator.refresh import refresh_all
from aggregator.store import Store
from aggregator.web import make_app
from tests.conftest import NOW, demo_sources, make_settings

OUTPUTS = ["/calendar.ics", "/feed.atom", "/events.json"]


def cursor_at(moment: datetime | int) -> str:
    """A cursor as the server writes them, for any start (or any number)."""
    if isinstance(moment, datetime):
        moment = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"{moment}|e1".encode()).decode().rstrip("=")


@pytest.fixture
async def client(aiohttp_client, tmp_path):
    settings = make_settings(tmp_path, demo_sources())
    store = await Store.open(settings.database_url)
    await refresh_all(store, Fetcher(None, settings.limits), settings, NOW)
    await store.close()
    return await aiohttp_client(make_app(settings, clock=lambda: NOW, scheduler=False))


async def refused(client, path: str) -> str:
    response = await client.get(path)
    body = await response.text()
    assert response.status == 400, (path, body)
    assert "Traceback" not in body
    return body


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("from=0001-01-01", "from='0001-01-01'"),
        ("from=0001-01-01&days=1", "from='0001-01-01'"),
        ("to=0001-01-01", "to='0001-01-01'"),
        ("from=9999-12-31", "from='9999-12-31'"),
        ("from=9999-12-31&days=1", "from='9999-12-31'"),
        ("to=9999-12-31", "to='9999-12-31'"),
        ("from=2999-12-25&days=10", "days=10"),
        ("from=1899-12-31", "from='1899-12-31'"),
        ("to=3000-01-01", "to='3000-01-01'"),
    ],
)
async def test_a_window_beyond_the_calendar_years_is_a_400_naming_the_parameter(
    client, output, query, named
):
    assert named in await refused(client, f"{output}?{query}")


@pytest.mark.parametrize("output", OUTPUTS)
async def test_a_window_on_the_first_and_last_days_is_answered(client, output):
    for query in ("from=1900-01-01&days=1", "from=2999-12-31&days=1", "to=2999-12-31"):
        response = await client.get(f"{output}?{query}")
        assert response.status == 200, (query, await response.text())


@pytest.mark.parametrize(
    "moment",
    [10**30, -(10**30), datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)],
    ids=["huge", "huge-negative", "year-1", "year-9999"],
)
@pytest.mark.parametrize("where", ["/events.json?cursor=", "/?after="])
async def test_a_cursor_beyond_the_calendar_years_is_a_400_naming_it(client, where, moment):
    assert "cursor=" in await refused(client, where + cursor_at(moment))


@pytest.mark.parametrize("month", ["0001-01", "1969-12", "2201-01", "9999-12"])
async def test_a_month_beyond_the_page_years_is_a_400_naming_it(client, month):
    assert f"month='{month}'" in await refused(client, f"/?month={month}")


@pytest.mark.parametrize("month", ["1970-01", "2200-12"])
async def test_the_first_and_last_months_of_the_page_are_answered(client, month):
    response = await client.get(f"/?month={month}")
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("month", ["1970-01", "1970-02", "2200-11", "2200-12"])
async def test_every_month_link_of_a_page_is_answered(client, month):
    """The page links the months before and after it, none beyond the years it shows."""
    page = await (await client.get(f"/?month={month}")).text()
    links = set(re.findall(r'href="(/\?month=[^"]*)"', page))
    assert links, page
    for link in links:
        response = await client.get(html.unescape(link))
        assert response.status == 200, (link, await response.text())
