"""gRPC over a pair of file descriptors: how BuildKit talks to a gateway frontend.

BuildKit is the server; the frontend container's stdin carries the server's bytes and its stdout
the frontend's (HTTP/2 with prior knowledge, one connection). grpcio cannot use a pipe pair as a
transport, so the channel dials a private unix socket and two threads copy bytes between the
accepted connection and the descriptors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from dockerify.errors import DockerifyError

# Image configs and small files come back through ReadFile; big data never does.
MAX_MESSAGE = 64 << 20


def _copy_fd_to_socket(fd: int, conn: socket.socket) -> None:
    try:
        while True:
            data = os.read(fd, 1 << 16)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)


def _copy_socket_to_fd(conn: socket.socket, fd: int) -> None:
    try:
        while True:
            data = conn.recv(1 << 16)
            if not data:
                break
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
    except OSError:
        pass
    with contextlib.suppress(OSError):
        os.close(fd)


class FdTransport:
    """A grpcio channel whose one connection runs over (read_fd, write_fd)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._dir = tempfile.mkdtemp(prefix="dockerify-grpc-")
        path = os.path.join(self._dir, "s")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._threads: list[threading.Thread] = []

        def accept() -> None:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            # Only one connection: BuildKit's end of the pipe is never re-dialled.
            self._listener.close()
            for target, args in (
                (_copy_fd_to_socket, (read_fd, conn)),
                (_copy_socket_to_fd, (conn, write_fd)),
            ):
                t = threading.Thread(target=target, args=args, daemon=True)
                t.start()
                self._threads.append(t)

        self._acceptor = threading.Thread(target=accept, daemon=True)
        self._acceptor.start()
        self.channel = grpc.insecure_channel(
            "unix:" + path,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
                # BuildKit's solve errors carry the failed op and Go stack traces in the
                # grpc-status-details-bin trailer, well beyond grpcio's 8 KiB default.
                ("grpc.max_metadata_size", 16 << 20),
                ("grpc.enable_http_proxy", 0),
                ("grpc.enable_retries", 0),
            ],
        )

    def unary(
        self, path: str, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any]
    ) -> Callable[..., Any]:
        call: Callable[..., Any] = self.channel.unary_unary(
            path, request_serializer=encode, response_deserializer=decode
        )
        return call

    def close(self) -> None:
        self.channel.close()
        with contextlib.suppress(OSError):
            self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def stdio_transport() -> Iterator[FdTransport]:
    """The frontend's own stdin/stdout. Afterwards fd 1 is stderr and fd 0 is /dev/null: a stray
    print() would otherwise corrupt the HTTP/2 stream, and the user would see only "exit code: 1"."""
    read_fd, write_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    transport = FdTransport(read_fd, write_fd)
    try:
        yield transport
    finally:
        transport.close()


def rpc_message(err: grpc.RpcError) -> str:
    details = err.details() if hasattr(err, "details") else None
    return str(details or err)


def call(fn: Callable[..., Any], request: Any, what: str) -> Any:
    try:
        return fn(request)
    except grpc.RpcError as e:
        raise DockerifyError(f"{what}: {rpc_message(e)}") from None
