"""Change notification for cached files (HTTP.sys's CacheUntilChange), with inotify.

A file answered on the listener's fast path is watched rather than stat'ed on every hit:
its inode (written, truncated, its attributes or links changed, moved, deleted) and its
directory (a name created, moved or deleted there, as an editor's save-by-rename does).
`poll` reads what the kernel has queued: a single ioctl when nothing has.

Why this is never stale: the kernel queues an inotify event inside the write (or rename)
that makes it, so a change completed before a client sent its request is queued before
that request's bytes arrive. The responder polls before the first fast hit of each turn
of the event loop; every request of that turn arrived before the poll, so it sees every
change made before it was sent. A file that cannot be watched (inotify unavailable, the
watch limit reached) is stat'ed on every hit instead, as before.

inotify does not see a change made from another machine to a network filesystem (NFS,
SMB, FUSE), nor a watched file's directory being swapped for another by rename; for those
the listener also stats every cached file once a second (`LocalResponder.revalidate`).
"""

from __future__ import annotations

import contextlib
import os

from inotify_simple import INotify, flags

FILE_EVENTS = (flags.MODIFY | flags.ATTRIB | flags.CLOSE_WRITE | flags.MOVE_SELF
               | flags.DELETE_SELF)
DIR_EVENTS = flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO
#: Files watched at most; beyond this, new ones are stat'ed on each hit.
MAX_WATCHED_FILES = 4096


class FileWatch:
    def __init__(self) -> None:
        self.inotify: INotify | None
        try:
            self.inotify = INotify(nonblocking=True)
        except OSError:
            self.inotify = None  # no inotify here: every hit stats its file
        self.files: dict[str, int] = {}  # watched path -> its watch
        self._paths: dict[int, set[str]] = {}  # a file's watch -> its paths (hard links)
        self._dirs: dict[int, str] = {}  # a directory's watch -> its path
        self._dir_watches: dict[str, int] = {}

    def watch(self, path: str) -> bool:
        """Watch `path` (a real path); False if it cannot be: stat it on each use then."""
        if path in self.files:
            return True
        inotify = self.inotify
        if inotify is None or len(self.files) >= MAX_WATCHED_FILES:
            return False
        directory = os.path.dirname(path)
        try:
            if directory not in self._dir_watches:
                dir_watch = inotify.add_watch(directory, DIR_EVENTS)
                self._dir_watches[directory] = dir_watch
                self._dirs[dir_watch] = directory
            file_watch = inotify.add_watch(path, FILE_EVENTS)
        except OSError:
            return False
        self.files[path] = file_watch
        self._paths.setdefault(file_watch, set()).add(path)
        return True

    def poll(self) -> list[str]:
        """The watched paths that changed since the last poll (no longer watched now)."""
        inotify = self.inotify
        if inotify is None:
            return []
        events = inotify.read(timeout=0)
        if not events:
            return []
        changed: set[str] = set()
        for event in events:
            if event.mask & flags.Q_OVERFLOW:  # events were lost: trust nothing
                changed.update(self.files)
                break
            paths = self._paths.get(event.wd)
            if paths is not None:
                changed.update(paths)
            elif event.name and event.wd in self._dirs:
                path = os.path.join(self._dirs[event.wd], event.name)
                if path in self.files:
                    changed.add(path)
        for path in list(changed):
            if path in self.files:
                changed.update(self._forget(path))
        return sorted(changed)

    def _forget(self, path: str) -> set[str]:
        """Stop watching `path`, and its hard links that share the watch; all of them."""
        file_watch = self.files.pop(path)
        paths = self._paths.pop(file_watch, set()) | {path}
        for other in paths:
            self.files.pop(other, None)
        if self.inotify is not None:
            with contextlib.suppress(OSError):  # already gone with its file
                self.inotify.rm_watch(file_watch)
        return paths

    def close(self) -> None:
        if self.inotify is not None:
            self.inotify.close()
            self.inotify = None
        self.files.clear()
