from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import ServerProcess


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """start_server("app:application", "--workers", "2", ...) -> a running ServerProcess."""
    servers: list[ServerProcess] = []

    def start(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
              ) -> ServerProcess:
        argv = list(args)
        if argv and argv[0] not in ("run", "serve") and not argv[0].startswith("-"):
            argv = ["run", *argv]
        if "--bind" not in argv and argv[0] == "run":
            argv += ["--bind", "127.0.0.1:0"]
        if "--control" not in argv:
            argv += ["--control", str(tmp_path / f"control-{len(servers)}.sock")]
        server = ServerProcess(argv, tmp_path, cwd=cwd, env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory every user can read: a root server's workers run as nobody."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="webgarden-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
