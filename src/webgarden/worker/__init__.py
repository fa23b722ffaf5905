"""Worker processes (IIS: w3wp.exe): host a pool's WSGI applications.

The one call an application may make of its worker:

    from webgarden.worker import request_recycle
    request_recycle()   # "I am unhealthy": the manager replaces this worker, overlapped

It is IIS's "ISAPI reported unhealthy" (event 2299, recycle reason IsapiUnhealthy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webgarden.worker.channel import Channel

_channel: Channel | None = None  # set by the worker's main once it serves


def request_recycle() -> bool:
    """Ask for this worker to be recycled. False when not running in a webgarden worker."""
    from webgarden.ipc.frames import FrameType

    if _channel is None:
        return False
    _channel.send_frame(FrameType.RECYCLE, 0)
    return True
