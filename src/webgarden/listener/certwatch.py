"""The certificate stores, watched with inotify (`tls.CertStore` holds what they serve).

A file written (closed after writing), renamed into place (as a deploy hook does) or
chmod'ed (a key made private) is reloaded at once, from the loop's reader: the next
handshake uses it. A deleted or renamed-away file is dropped. Files not named `*.pem` are
ignored, so a hook's temporary file is never read half-written.
"""

from __future__ import annotations

import asyncio
import os

from inotify_simple import INotify, flags

from webgarden.listener.tls import CertStore

_WATCH = (flags.CLOSE_WRITE | flags.MOVED_TO | flags.ATTRIB | flags.DELETE | flags.MOVED_FROM)


class CertWatch:
    """The store directories, watched with inotify: a file written, renamed into place or
    chmod'ed is reloaded at once (from the loop's reader), a deleted one is dropped."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: CertStore) -> None:
        self.loop = loop
        self.store = store
        self.inotify: INotify | None = None
        self.dirs: dict[int, str] = {}
        try:
            self.inotify = INotify(nonblocking=True)
            for directory in store.directories():
                self.dirs[self.inotify.add_watch(directory, _WATCH)] = directory
        except OSError as exc:
            store.emit("tls.watch_unavailable", reason=exc.strerror or str(exc))
            return
        loop.add_reader(self.inotify.fileno(), self._changed)

    def _changed(self) -> None:
        if self.inotify is None:
            return
        for event in self.inotify.read(timeout=0):
            directory = self.dirs.get(event.wd)
            if directory is None or not event.name.lower().endswith(".pem"):
                continue
            path = os.path.join(directory, event.name)
            if event.mask & (flags.DELETE | flags.MOVED_FROM):
                self.store.removed(path)
            else:
                self.store.reload(path)

    def close(self) -> None:
        if self.inotify is not None:
            self.loop.remove_reader(self.inotify.fileno())
            self.inotify.close()
            self.inotify = None
