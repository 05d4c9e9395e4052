"""How many backend calls to keep in flight, adapted to the measured round trips and to what
the server accepts.

Behind a server whose compute is not the limit (a GPU behind 20 ms of network), a call's round
trip does not grow when more calls overlap, so the run goes as fast as the calls in flight
allow. The window starts at the configured number of calls and grows by :data:`GROWTH_STEP`
for every call that comes back *latency-bound* (its round trip at most :data:`UNSLOWED` times
the fastest full batch's: at least half of it is the network, not a queue at the server) while
a full batch waits for a slot: it at most quadruples per round trip, so a run behind a far
server sends a whole level of its searches at once after a round trip or two. It shrinks
again, at most halving per round trip, when round trips grow past :data:`SLOWED` times the
fastest (the backend, not the network, is then the limit). It never goes below the configured
number, nor above the ceiling the buffer budget allows. While it is growing, its
:attr:`~InflightWindow.reach` (the calls it may have one round trip from now) is four times
its size, so that callers who pace their work by the window (the iterations of a search)
queue enough of it for the window to grow into.

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

#: A round trip within this factor of the fastest seen counts as latency-bound (not slowed by
#: the calls it overlaps with enough to make more of them useless).
UNSLOWED = 2.0

#: A round trip above this factor of the fastest seen shrinks the window.
SLOWED = 3.0

#: Calls the window gains for every latency-bound call answered while work waits.
GROWTH_STEP = 3

#: Calls the window loses for every call slower than :data:`SLOWED` times the fastest.
SHRINK_STEP = 0.5

#: A *cautious* window (a backend computing on this machine's own cores, whose round trips
#: grow with every call added): latency-bound within this factor of the fastest …
CAUTIOUS_UNSLOWED = 1.5
#: … slowed above this one …
CAUTIOUS_SLOWED = 2.5
#: … one call more per latency-bound call, a tenth less per slow one, and no reach beyond
#: its size: more calls at once only queue at the same cores, and the work paced by the window
#: (the iterations of a search, committed as they end) should not all start at once.
CAUTIOUS_SHRINK = 0.9

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

    def __init__(self, floor: int, ceiling: int, *, cautious: bool = False) -> None:
        #: whether the backend computes on this machine's cores (see :data:`CAUTIOUS_SLOWED`)
        self.cautious = cautious
        self.floor = max(1, floor)
        self.ceiling = max(self.floor, ceiling)
        self._limit = float(self.floor)
        self.fastest_s = math.inf
        #: the most calls the server accepted at once when it last refused one (None: never)
        self.server_cap: int | None = None
        #: calls refused for overload so far
        self.refusals = 0
        self._since_refusal = 0
        #: whether the last answered call was latency-bound (optimistic before the first)
        self.latency_bound = True
        self._full_seen = False

    @property
    def size(self) -> int:
        """Calls that may be in flight now."""
        return int(self._limit)

    @property
    def growing(self) -> bool:
        """Whether the window may still grow: below its top and its calls latency-bound."""
        return self.latency_bound and self.size < self._top()

    @property
    def reach(self) -> int:
        """The calls the window may allow one round trip from now: four times its size (within
        its top) while it is growing, else its size. Work paced by the window should fill this."""
        if self.cautious or not self.growing:
            return self.size
        return min(self._top(), (1 + GROWTH_STEP) * self.size)

    def observe(self, round_trip_s: float, backlog: bool, full: bool = True) -> None:
        """Account for one finished call; ``backlog``: a full batch was waiting for a slot;
        ``full``: the call carried a full batch (the fastest round trip is a full batch's once
        one came back: a one-row call sends a fraction of the bytes)."""
        if full and not self._full_seen:
            self._full_seen = True
            self.fastest_s = round_trip_s
        elif full or not self._full_seen:
            self.fastest_s = min(self.fastest_s, round_trip_s)
        if self.server_cap is not None:
            self._since_refusal += 1
            if self._since_refusal >= CAP_PROBE_CALLS * self.server_cap:
                self._since_refusal = 0
                self.server_cap += 1
                if self.server_cap >= self.ceiling:
                    self.server_cap = None  # the server takes all the window may ever want
        top = float(self._top())
        unslowed, slowed = (
            (CAUTIOUS_UNSLOWED, CAUTIOUS_SLOWED) if self.cautious else (UNSLOWED, SLOWED)
        )
        self.latency_bound = round_trip_s <= unslowed * self.fastest_s
        if self.latency_bound:
            if backlog:
                self._limit = min(top, self._limit + (1 if self.cautious else GROWTH_STEP))
        elif round_trip_s > slowed * self.fastest_s:
            # half a call less per slow call (the window at most halves per round trip), or a
            # tenth less when cautious; never below the floor (the cap's, once a server has
            # refused calls)
            smaller = self._limit * CAUTIOUS_SHRINK if self.cautious else self._limit - SHRINK_STEP
            self._limit = max(min(float(self._bottom()), self._limit), smaller)

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
