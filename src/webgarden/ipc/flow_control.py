"""The flow-control windows of the listener <-> worker protocol, defined once for both sides.

Each request stream has two windows, counted in body bytes:

* `REQUEST_WINDOW`: request-body bytes the listener may send a worker before it waits for
  CREDIT; the worker returns credit as the application reads. It bounds what an upload
  holds in a worker's memory.
* `RESPONSE_WINDOW`: response-body bytes a worker may send before it waits for CREDIT; the
  listener returns credit as the client's socket takes the bytes. It bounds what a slow
  client holds in the listener's memory, per stream, without stalling the worker's others.

The listener announces its request window in each request head (`RequestHead.window`); the
response window is implicit: both sides start every stream with it.
"""

from __future__ import annotations

#: Request body bytes in flight to a worker per stream before the listener waits for credit.
REQUEST_WINDOW = 1024 * 1024
#: Response body bytes in flight from a worker per stream before the worker waits for credit.
RESPONSE_WINDOW = 1024 * 1024
#: How far a worker's WebSocket control frames (pong, ping, close: a few bytes each, sent
#: outside the window) may take a stream's response window below zero. The listener counts
#: every RESPONSE_BODY byte against the window it granted; past this overdraft the worker
#: broke the link (`beyond-window`), and an honest worker drops a ping or pong instead.
CONTROL_SLACK = 16 * 1024
