"""A cacheable response is cached whatever iterable the app returns it as (a list, a
generator, any iterator), up to the cache's item bound; a larger one streams, uncached."""

from __future__ import annotations

import json

import httpx


def _stats(server) -> dict[str, int]:
    shown = server.admin("cache", "stats", "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_a_public_response_returned_as_a_generator_is_cached(start_server) -> None:
    server = start_server("testapp:application")
    with httpx.Client(base_url=server.url) as http:
        bodies = [http.get("/cached-gen").text for _ in range(5)]
    # HTTP.sys's rule, as for a list: stored on its second request, then the app is not called.
    assert bodies[:2] == ["call 1", "call 2"] and set(bodies[2:]) == {"call 2"}
    assert _stats(server)["hits"] == 3


def test_a_generator_larger_than_the_cache_item_bound_streams_and_is_not_cached(start_server
                                                                                ) -> None:
    server = start_server("testapp:application")
    with httpx.Client(base_url=server.url) as http:
        responses = [http.get("/cached-gen-big", params={"pieces": "30"}) for _ in range(4)]
    assert [r.text[:6] for r in responses] == ["call 1", "call 2", "call 3", "call 4"]
    assert all(len(r.content) == 6 + 300 * 1024 and r.headers.get("transfer-encoding")
               == "chunked" for r in responses)  # streamed, never held whole
    assert _stats(server)["stores"] == 0


def test_an_uncacheable_generator_still_streams_piece_by_piece(start_server) -> None:
    server = start_server("testapp:application")
    with httpx.Client(base_url=server.url) as http:
        responses = [http.get("/uncached-gen") for _ in range(3)]
    assert [r.text for r in responses] == ["call 1", "call 2", "call 3"]
    assert all(r.headers.get("transfer-encoding") == "chunked" for r in responses)


def test_gathering_holds_at_most_the_bound_and_one_chunk_then_hands_back_the_rest() -> None:
    from webgarden.worker.wsgi import _gather

    pulled = []

    def app_iterator():
        for i in range(100):
            pulled.append(i)
            yield b"x" * 10

    gathered, rest = _gather(app_iterator(), 25)
    assert len(gathered) == 3 and pulled == [0, 1, 2]  # 30 bytes: past 25, and no further
    assert rest is not None and sum(1 for _ in rest) == 97
    assert _gather(iter([b"a", b"b"]), 25) == ([b"a", b"b"], None)
