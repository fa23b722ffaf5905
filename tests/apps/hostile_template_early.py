"""A compromised application that lies to the server from its pool's template: while it is
imported there, it finds the template's control socket (`--control-fd` on the command line)
and says `Forked` for a pid it chose, before any Fork was asked for. The server must stop
the template (`template.violation`) and spawn the pool's workers directly.
"""

from __future__ import annotations

import os
import socket
import sys

from webgarden.ipc import spawn

if "--control-fd" in sys.argv:
    fd = int(sys.argv[sys.argv.index("--control-fd") + 1])
    with socket.socket(fileno=os.dup(fd)) as control:
        control.send(spawn.encoder.encode(spawn.Forked(os.getppid())))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
