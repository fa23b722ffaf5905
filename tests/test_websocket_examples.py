"""The FastAPI example's WebSocket chat, served for real, between two real clients."""

from __future__ import annotations

from pathlib import Path

from websockets.sync.client import connect

from harness import ServerProcess

FASTAPI_DIR = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app"


def test_two_clients_chat_through_the_fastapi_example(start_server) -> None:
    # One worker: the example keeps its rooms in the process (a broker would share them).
    server: ServerProcess = start_server("main:app", cwd=FASTAPI_DIR)
    base = f"ws://127.0.0.1:{server.port}/chat/garden"
    with connect(f"{base}?name=ann") as ann:
        assert ann.recv(timeout=10) == "ann joined"
        with connect(f"{base}?name=bob") as bob:
            assert bob.recv(timeout=10) == "bob joined"
            assert ann.recv(timeout=10) == "bob joined"
            ann.send("hello bob")
            assert bob.recv(timeout=10) == "ann: hello bob"
            assert ann.recv(timeout=10) == "ann: hello bob"
            bob.send("hi ann")
            assert ann.recv(timeout=10) == "bob: hi ann"
            assert bob.recv(timeout=10) == "bob: hi ann"
        assert ann.recv(timeout=10) == "bob left"
    with connect(f"ws://127.0.0.1:{server.port}/chat/other?name=cy") as cy:
        assert cy.recv(timeout=10) == "cy joined"  # another room: nobody else
