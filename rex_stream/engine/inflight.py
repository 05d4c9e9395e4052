"""How many backend calls to keep in flight, adapted to the measured round trips.

Behind a server whose compute is not the limit (a GPU behind 20 ms of network), a call's round
trip does not grow when more calls overlap, so the run goes as fast as the calls in flight
allow. The window starts at the configured number of calls and grows by one for every call
that comes back no slower than its fastest peers while a full batch waits for a slot (the
window at most doubles per round trip); it shrinks again when round trips grow (the backend,
not the network, is then the limit). It never goes below the configured number, nor above
the ceiling the buffer budget allows. The verdicts never depend on it: each row is scored alone.
"""

from __future__ import annotations

import math

#: The most calls in flight the window may grow to.
ADAPTIVE_CEILING = 64

#: A round trip within this factor of the fastest seen counts as "not slowed by overlap".
UNSLOWED = 1.5

#: A round trip above this factor of the fastest seen shrinks the window.
SLOWED = 2.5


class InflightWindow:
    """The number of calls to keep in flight: between ``floor`` and ``ceiling``."""

    def __init__(self, floor: int, ceiling: int) -> None:
        self.floor = max(1, floor)
        self.ceiling = max(self.floor, ceiling)
        self._limit = float(self.floor)
        self.fastest_s = math.inf

    @property
    def size(self) -> int:
        """Calls that may be in flight now."""
        return int(self._limit)

    def observe(self, round_trip_s: float, backlog: bool) -> None:
        """Account for one finished call; ``backlog``: a full batch was waiting for a slot."""
        self.fastest_s = min(self.fastest_s, round_trip_s)
        if round_trip_s <= UNSLOWED * self.fastest_s:
            if backlog:
                self._limit = min(float(self.ceiling), self._limit + 1.0)
        elif round_trip_s > SLOWED * self.fastest_s:
            self._limit = max(float(self.floor), self._limit * 0.9)
