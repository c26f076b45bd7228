"""How often each client may do a costly thing (a /check, a new saved filter): at most
`rate` times in `per` seconds, remembered in memory for a bounded number of clients."""

from __future__ import annotations

from datetime import datetime

#: clients remembered at most: past it, those quiet for `per` seconds are forgotten
CLIENTS = 10_000


class Quota:
    """At most `rate` times in `per` seconds per client."""

    def __init__(self, rate: int, per: float) -> None:
        self.rate, self.per = rate, per
        self._asked: dict[str, list[datetime]] = {}

    def wait(self, client: str, now: datetime) -> float:
        """Seconds until `client` may again (0: now), counting this time when it may."""
        recent = [t for t in self._asked.get(client, []) if (now - t).total_seconds() < self.per]
        if len(recent) >= self.rate:
            self._asked[client] = recent
            return self.per - (now - recent[0]).total_seconds()
        self._asked[client] = [*recent, now]
        if len(self._asked) > CLIENTS:  # forget the quiet ones
            self._asked = {
                c: t for c, t in self._asked.items() if (now - t[-1]).total_seconds() < self.per
            }
        return 0.0
