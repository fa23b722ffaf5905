"""The worker's channel and WSGI host over a real socketpair, in one process."""

from __future__ import annotations

import socket
import threading

from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, FrameDecoder, FrameType
from webgarden.worker.channel import Channel
from webgarden.worker.wsgi import WSGIHost


def _head(path: str) -> bytes:
    head = messages.RequestHead(0, "GET", path.encode(), path, "", b"", "HTTP/1.1", [],
                                ("127.0.0.1", 1), ("127.0.0.1", 2))
    return messages.encoder.encode(head)


def test_a_request_aborted_before_a_thread_takes_it_is_skipped_and_its_stream_ended() -> None:
    listener, worker = socket.socketpair()
    channel = Channel(worker)
    called: list[str] = []

    def app(environ, start_response):
        called.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b"ok"]

    listener.sendall(
        frames.encode(FrameType.REQUEST, 1, _head("/gone"), FLAG_END)
        + frames.encode(FrameType.ABORT, 1, b"", FLAG_END)
        + frames.encode(FrameType.REQUEST, 2, _head("/kept"), FLAG_END)
    )
    listener.shutdown(socket.SHUT_WR)
    channel.run_reader(lambda ftype, payload: None)  # reads all three, then EOF
    host = WSGIHost([app], channel, "pool")
    channel.requests.put(None)
    host.serve_forever()
    assert called == ["/kept"]
    got = FrameDecoder().feed(listener.recv(65536))
    assert [(f.type, f.stream, f.flags & FLAG_END) for f in got] == [
        (FrameType.ABORT, 1, FLAG_END), (FrameType.RESPONSE, 2, FLAG_END)]


def test_response_bodies_wait_for_credit_and_resume_when_it_comes() -> None:
    listener, worker = socket.socketpair()
    channel = Channel(worker)
    size = 3 * 1024 * 1024

    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"x" * size

    reader = threading.Thread(target=channel.run_reader, args=(lambda t, p: None,))
    reader.start()
    host = WSGIHost([app], channel, "pool")
    serving = threading.Thread(target=host.serve_forever)
    serving.start()
    listener.sendall(frames.encode(FrameType.REQUEST, 5, _head("/big"), FLAG_END))
    decoder, body, credited, done = FrameDecoder(), 0, 0, False
    while not done:
        for frame in decoder.feed(listener.recv(1 << 20)):
            if frame.type == FrameType.RESPONSE_BODY:
                body += len(frame.payload)
                done = bool(frame.flags & FLAG_END)
        # The worker never runs more than one window ahead of the credit it was given.
        assert body <= 1024 * 1024 + credited
        if body - credited >= 1024 * 1024 and not done:
            listener.sendall(frames.encode(FrameType.CREDIT, 5, messages.count_payload(body - credited)))
            credited = body
    assert body == size
    channel.requests.put(None)
    serving.join()
    listener.close()
    reader.join()


def test_no_credit_is_sent_for_a_body_read_after_the_response_ended() -> None:
    # The listener releases a stream at its END: a frame for it after that would be a
    # violation of the link, so body the app reads late (here in close()) is not credited.
    listener, worker = socket.socketpair()
    channel = Channel(worker)
    late: list[bytes] = []
    closed = threading.Event()

    class Body(list):  # type: ignore[type-arg]
        def __init__(self, environ) -> None:
            super().__init__([b"ok"])
            self.environ = environ

        def close(self) -> None:
            late.append(self.environ["wsgi.input"].read())
            closed.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return Body(environ)

    reader = threading.Thread(target=channel.run_reader, args=(lambda t, p: None,))
    reader.start()
    listener.sendall(frames.encode(FrameType.REQUEST, 3, _head("/late"))
                     + frames.encode(FrameType.REQUEST_BODY, 3, b"abc", FLAG_END))
    host = WSGIHost([app], channel, "pool")
    serving = threading.Thread(target=host.serve_forever)
    serving.start()
    # The request must be served before the host is told to stop: the reader thread queues
    # it when it has read the socket, which may come after a stop queued at once.
    assert closed.wait(10)
    channel.requests.put(None)
    serving.join()
    assert late == [b"abc"]
    listener.settimeout(5)
    got = FrameDecoder().feed(listener.recv(65536))
    assert [(f.type, f.stream, f.flags & FLAG_END) for f in got] == [
        (FrameType.RESPONSE, 3, FLAG_END)]
    listener.close()
    reader.join()
