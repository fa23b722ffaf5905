"""An exchange's life, as data: states, events and the one table that joins them.

Rules:

1. Everything that moves an exchange from one state to another goes through `advance`,
   and every legal move is a row of `TRANSITIONS`. A move the table lacks is a bug in the
   listener, never the client's or the worker's fault: `IllegalTransition` names the
   state and the event, so the bug report says which.
2. The machine knows nothing of the protocol: an HTTP/1.1 request, an HTTP/2 stream and an
   upgraded WebSocket go through the same states. Framing, keep-alive and body credit are
   the protocol core's and the exchange's business, not the state's.

Theory of operation:

    RECEIVED --DISPATCH--> DISPATCHED --RESPOND--> RESPONDING --COMPLETE--> DONE
        ^                      |
        +------REQUEUE---------+   (the worker died before any byte; safe to send again)

    RECEIVED / DISPATCHED may also RESPOND directly (the cache, a file, an error page).
    RECEIVED / DISPATCHED / RESPONDING --CLIENT_GONE--> ABANDONED

* RECEIVED: the head is parsed; the exchange is being routed, or waits in its pool's
  queue.
* DISPATCHED: a worker stream carries it; nothing has been sent to the client yet, so it
  may still be sent again elsewhere or answered with an error page.
* RESPONDING: a response byte went to the client; from here a failure can only cut the
  connection, never change the answer.
* DONE: the client has the whole response and it is logged. A worker stream may still be
  ending (its END frame comes after the last byte the client needed): whatever it still
  sends is credited back and dropped.
* ABANDONED: the client left first. The worker (if any) was told to stop; what it still
  sends is dropped.
"""

from __future__ import annotations

import enum

# IntEnums, numbered from 1: a member is an index into `_TABLE` (a tuple lookup, no hashing
# on the hot path) and is never falsy, so `_TABLE[state][event] or illegal(...)` works.


class ExchangeState(enum.IntEnum):
    RECEIVED = 1
    DISPATCHED = 2
    RESPONDING = 3
    DONE = 4
    ABANDONED = 5


class ExchangeEvent(enum.IntEnum):
    DISPATCH = 1  # given to a worker stream
    REQUEUE = 2  # its worker died before any response byte; it goes back in line
    RESPOND = 3  # the first response byte went to the client
    COMPLETE = 4  # the last response byte went to the client
    CLIENT_GONE = 5  # the connection closed before the response was complete


S, E = ExchangeState, ExchangeEvent

#: (state, event) -> the next state. Nothing else moves an exchange.
TRANSITIONS: dict[tuple[ExchangeState, ExchangeEvent], ExchangeState] = {
    (S.RECEIVED, E.DISPATCH): S.DISPATCHED,
    (S.RECEIVED, E.RESPOND): S.RESPONDING,
    (S.RECEIVED, E.CLIENT_GONE): S.ABANDONED,
    (S.DISPATCHED, E.REQUEUE): S.RECEIVED,
    (S.DISPATCHED, E.RESPOND): S.RESPONDING,
    (S.DISPATCHED, E.CLIENT_GONE): S.ABANDONED,
    (S.RESPONDING, E.COMPLETE): S.DONE,
    (S.RESPONDING, E.CLIENT_GONE): S.ABANDONED,
}

#: States in which nothing more is sent to the client for this exchange.
FINISHED = frozenset({S.DONE, S.ABANDONED})

#: The same table, indexed [state][event]; None where TRANSITIONS has no row.
TABLE: tuple[tuple[ExchangeState | None, ...], ...] = tuple(
    tuple(TRANSITIONS.get((state, event)) if state and event else None
          for event in (0, *ExchangeEvent))
    for state in (0, *ExchangeState))


class IllegalTransition(RuntimeError):
    """The listener tried a move the table does not have (a listener bug)."""

    def __init__(self, state: ExchangeState, event: ExchangeEvent) -> None:
        super().__init__(f"an exchange in state {state.name} cannot take event {event.name}")
        self.state = state
        self.event = event


def illegal(state: ExchangeState, event: ExchangeEvent) -> ExchangeState:
    """Raise IllegalTransition (typed as a state, for `TABLE[s][e] or illegal(s, e)`)."""
    raise IllegalTransition(state, event)


def advance(state: ExchangeState, event: ExchangeEvent) -> ExchangeState:
    """The state after `event`, or IllegalTransition."""
    return TABLE[state][event] or illegal(state, event)
