"""Network events -> bytes: iCalendar (ics.py), Atom (atom.py), JSON (json.py). Pure."""

from __future__ import annotations

from urllib.parse import urlsplit

from aggregator import __version__
from aggregator.model import Network
from aggregator.normalise import fingerprint
from aggregator.render.text import label


def render_key(network: Network) -> str:
    """What, besides an event's content, goes into its stored bytes: a change re-renders all."""
    return fingerprint(
        {"version": __version__, "base_url": network.base_url, "languages": list(network.languages)}
    )


def uid_domain(network: Network) -> str:
    return urlsplit(network.base_url).hostname or "aggregator.invalid"


def event_url(network: Network, event_id: str) -> str:
    return f"{network.base_url}/events/{event_id}"


def organised_by(network: Network, organisers: tuple[str, ...]) -> str:
    """'Arrangeret af / Organised by: A, B' in the network's languages."""
    return f"{label(network, 'organised_by')}: {', '.join(organisers)}"
