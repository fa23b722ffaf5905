"""The listener's change notification for cached files (inotify), on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from webgarden.listener.filewatch import FileWatch


@pytest.fixture
def watched(tmp_path: Path):
    path = tmp_path / "page.html"
    path.write_text("one")
    watch = FileWatch()
    if watch.inotify is None:
        pytest.skip("inotify is not available here")
    assert watch.watch(str(path)) and watch.poll() == []
    yield watch, path
    watch.close()


@pytest.mark.parametrize("change", ["write", "truncate", "chmod", "rename over", "delete",
                                    "move away"])
def test_every_way_of_changing_a_file_is_notified(watched, change: str) -> None:
    watch, path = watched
    if change == "write":
        path.write_text("two")
    elif change == "truncate":
        os.truncate(path, 0)
    elif change == "chmod":
        path.chmod(0o600)
    elif change == "rename over":
        (path.parent / "new.html").write_text("two")
        os.replace(path.parent / "new.html", path)
    elif change == "delete":
        path.unlink()
    else:
        path.rename(path.parent / "elsewhere.html")
    assert watch.poll() == [str(path)]
    assert str(path) not in watch.files  # no longer watched: the next use stats it again
    assert watch.poll() == []


def test_other_files_in_the_directory_are_not_its_changes(watched) -> None:
    watch, path = watched
    (path.parent / "other.html").write_text("x")
    (path.parent / "other.html").unlink()
    assert watch.poll() == [] and str(path) in watch.files


def test_a_file_that_cannot_be_watched_is_refused(tmp_path: Path) -> None:
    watch = FileWatch()
    assert not watch.watch(str(tmp_path / "missing.html"))
    watch.close()


def test_a_change_through_one_hard_link_is_a_change_of_every_link(watched) -> None:
    watch, path = watched
    link = path.parent / "link.html"
    os.link(path, link)
    assert watch.watch(str(link))
    with open(link, "a") as f:
        f.write("more")
    assert watch.poll() == sorted([str(path), str(link)])
    assert not watch.files
