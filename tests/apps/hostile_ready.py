"""A compromised application that, while it is imported, says READY itself, naming another
pid: a violation before its pool was ever ready. The pool once respawned it for ever, and
its server never started (nor handled SIGTERM)."""

import gc
import threading

from webgarden.ipc import messages
from webgarden.ipc.frames import FrameType
from webgarden.worker.channel import Channel

channel = next(o for o in gc.get_objects() if isinstance(o, Channel))
channel.send_frame(FrameType.READY, 0, messages.encoder.encode(messages.Ready(1, 1)))
threading.Event().wait(60)  # killed before this ends


def application(environ, start_response):  # never served
    start_response("200 OK", [])
    return [b""]
