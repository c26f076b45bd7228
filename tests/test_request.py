"""What a request asks for (request.py): JSON or the page, one rule for every route. No
server: aiohttp's mocked requests."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from aggregator.request import wants_json

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.mark.parametrize(
    ("path", "accept", "by_default", "expected"),
    [
        # a .json path or ?format=json asks for JSON, whatever Accept says
        ("/sources.json", BROWSER, False, True),
        ("/sources/a.json", "", False, True),
        ("/check?format=json", BROWSER, False, True),
        ("/check?format=json", "", False, True),
        # a browser names text/html and gets the page
        ("/sources", BROWSER, True, False),
        ("/events/x", BROWSER, False, False),
        ("/events/x", "text/html, application/json", False, False),
        # a client that names JSON (and not HTML) gets JSON
        ("/events/x", "application/json", False, True),
        ("/check", "application/json", False, True),
        ("/sources", "application/json", True, True),
        # curl (*/*) or no Accept: the route's default
        ("/sources", "*/*", True, True),
        ("/sources/a", "", True, True),
        ("/events/x", "*/*", False, False),
        ("/check", "", False, False),
        ("/check?format=html", "", False, False),
    ],
)
def test_wants_json(path, accept, by_default, expected):
    headers = {"Accept": accept} if accept else {}
    request = make_mocked_request("GET", path, headers=headers)
    assert wants_json(request, by_default=by_default) is expected
