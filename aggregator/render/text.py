"""Small text helpers shared by the renderers."""

from __future__ import annotations

from datetime import datetime, timedelta

from aggregator.model import MergedEvent
from aggregator.normalise import zone


def when(event: MergedEvent, network_zone: str) -> str:
    """'2027-02-04 13:00–16:00 (Europe/Copenhagen)' or '2026-12-12 – 2026-12-13' for all-day."""
    if event.all_day:
        last = event.end - timedelta(days=1)
        return event.start.isoformat() if last <= event.start else f"{event.start} – {last}"
    tz = zone(event.tzid or "") or zone(network_zone)
    start: datetime = event.start.astimezone(tz)
    end: datetime = event.end.astimezone(tz)
    if end.date() == start.date():
        span = f"{start:%Y-%m-%d %H:%M}–{end:%H:%M}"
    else:
        span = f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M}"
    return f"{span} ({tz.key})"
