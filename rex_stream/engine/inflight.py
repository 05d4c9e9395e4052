"""How many backend calls to keep in flight, adapted to the measured round trips and to what
the server accepts.

Behind a server whose compute is not the limit (a GPU behind 20 ms of network), a call's round
trip does not grow when more calls overlap, so the run goes as fast as the calls in flight
allow. The window starts at the configured number of calls and grows by one for every call
that comes back no slower than its fastest peers while a full batch waits for a slot (the
window at most doubles per round trip); it shrinks again when round trips grow (the backend,
not the network, is then the limit). It never goes below the configured number, nor above
the ceiling the buffer budget allows.

A server that refuses a call for overload (HTTP 429, gRPC ``RESOURCE_EXHAUSTED``, Triton's
"exceeds maximum queue size") sets a *server cap*: the calls it was serving when it refused,
less one. The window then stays at or under that cap, below the configured number if need
be; after a stretch of calls without a refusal the cap rises by one, so a server whose load
has passed is probed again, one call at a time.

Adapters with their own concurrency gate or connection pool (HTTP, Triton) implement
:class:`FollowsInflight`; the scheduler tells them every new window size, so their limits
follow the window instead of staying at the size they were opened with. The verdicts never
depend on any of this: each row is scored alone.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

#: The most calls in flight the window may grow to.
ADAPTIVE_CEILING = 64

#: A round trip within this factor of the fastest seen counts as "not slowed by overlap".
UNSLOWED = 1.5

#: A round trip above this factor of the fastest seen shrinks the window.
SLOWED = 2.5

#: Calls answered without a refusal, per call of the server cap, before the cap rises by one.
CAP_PROBE_CALLS = 8


@runtime_checkable
class FollowsInflight(Protocol):
    """A backend whose own gate (a limiter, a connection pool) follows the scheduler's window."""

    def follow_inflight(self, calls: int) -> None:
        """Allow ``calls`` concurrent calls from now on (calls already running go on)."""
        ...


class InflightWindow:
    """The number of calls to keep in flight: between ``floor`` and ``ceiling``, and within
    the cap a server set by refusing calls for overload (see the module doc)."""

    def __init__(self, floor: int, ceiling: int) -> None:
        self.floor = max(1, floor)
        self.ceiling = max(self.floor, ceiling)
        self._limit = float(self.floor)
        self.fastest_s = math.inf
        #: the most calls the server accepted at once when it last refused one (None: never)
        self.server_cap: int | None = None
        #: calls refused for overload so far
        self.refusals = 0
        self._since_refusal = 0

    @property
    def size(self) -> int:
        """Calls that may be in flight now."""
        return int(self._limit)

    def observe(self, round_trip_s: float, backlog: bool) -> None:
        """Account for one finished call; ``backlog``: a full batch was waiting for a slot."""
        self.fastest_s = min(self.fastest_s, round_trip_s)
        if self.server_cap is not None:
            self._since_refusal += 1
            if self._since_refusal >= CAP_PROBE_CALLS * self.server_cap:
                self._since_refusal = 0
                self.server_cap += 1
                if self.server_cap >= self.ceiling:
                    self.server_cap = None  # the server takes all the window may ever want
        top = float(self._top())
        if round_trip_s <= UNSLOWED * self.fastest_s:
            if backlog:
                self._limit = min(top, self._limit + 1.0)
        elif round_trip_s > SLOWED * self.fastest_s:
            # never below the floor (the cap's, once a server has refused calls)
            self._limit = max(min(float(self._bottom()), self._limit), self._limit * 0.9)

    def overloaded(self, at_server: int) -> None:
        """The server refused a call for overload while ``at_server`` calls (that one included)
        were with it: cap the window just under that."""
        self.refusals += 1
        self._since_refusal = 0
        cap = max(1, at_server - 1)
        self.server_cap = cap if self.server_cap is None else min(self.server_cap, cap)
        self._limit = min(self._limit, float(self.server_cap))

    def _top(self) -> int:
        return self.ceiling if self.server_cap is None else min(self.ceiling, self.server_cap)

    def _bottom(self) -> int:
        return self.floor if self.server_cap is None else min(self.floor, self.server_cap)
