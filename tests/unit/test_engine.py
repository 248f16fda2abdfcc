"""engine.py's pure parts on real sockets: a chunked upload's framing survives partial writes,
the daemon's error replies become one message, and DOCKER_HOST picks the socket."""

from __future__ import annotations

import random
import socket
import threading

import pytest

from dockerify import engine


def _receive(sock: socket.socket, out: bytearray) -> None:
    while data := sock.recv(777):  # small reads: the writer sees a full buffer and partial writes
        out += data


def test_send_all_keeps_every_byte_in_order_through_partial_writes() -> None:
    rng = random.Random(7)
    pieces = [rng.randbytes(rng.choice((0, 1, 511, 4096, 300_000))) for _ in range(60)]
    pieces += [b"x"] * 3000  # more pieces than one sendmsg may carry (IOV_MAX)
    writer, reader = socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer.settimeout(10)  # a socket with a timeout may take part of a sendmsg
    got = bytearray()
    thread = threading.Thread(target=_receive, args=(reader, got))
    thread.start()
    engine.send_all(writer, pieces)
    writer.close()
    thread.join()
    reader.close()
    assert bytes(got) == b"".join(pieces)


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, b'{"message":"No such image: sha256:0"}', "No such image: sha256:0"),
        (500, b"plain words", "plain words"),
        (
            200,
            b'{"status":"x"}\r\n{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}\r\n',
            "unexpected EOF",
        ),
        (200, b'{"errorDetail":{"message":"only detail"}}\n', "only detail"),
        (200, b'{"status":"sha256:ab"}\n', None),
    ],
)
def test_reply_error_is_the_daemons_words(status: int, body: bytes, message: str | None) -> None:
    assert engine.Reply(status, body).error() == message


def test_socket_path_follows_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine.socket_path() == engine.DEFAULT_SOCKET
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert engine.socket_path() == "/run/other.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert engine.socket_path() is None
    assert engine.connect() is None
