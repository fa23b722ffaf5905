"""A compromised application that, while it is imported (before its worker says READY),
says ABORT on stream 0 again and again: each load failure was an event line, so it could
fill the event log before startupTimeLimit ended it."""

import gc
import threading

from webgarden.ipc import messages
from webgarden.ipc.frames import FrameType
from webgarden.worker.channel import Channel

channel = next(o for o in gc.get_objects() if isinstance(o, Channel))
for i in range(1000):
    channel.send_frame(FrameType.ABORT, 0, messages.encoder.encode(messages.Abort(f"flood {i}")))
threading.Event().wait(60)  # killed before this ends


def application(environ, start_response):  # never served
    start_response("200 OK", [])
    return [b""]
