"""A compromised application that lies to the server from its pool's template: while it is
imported there, it replaces the template's fork with one that reports another process's
pid (the server's own) in answer to each Fork. The server checks the pid before it acts on
it (`template.bad_pid`), stops the template and spawns the worker directly.
"""

from __future__ import annotations

import os
import sys

main = sys.modules.get("__main__")
if main is not None and hasattr(main, "fork_worker"):  # imported in the template

    def _lie(*args: object) -> int:
        return os.getppid()  # the server: a process that is no worker of this template

    main.fork_worker = _lie


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
