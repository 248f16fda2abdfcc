"""A fake BuildKit LLBBridge: a real grpcio server (generic handlers, bytes in and out) reached
through a pipe pair, as the frontend reaches BuildKit through its stdin and stdout."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from dockerify.frontend.gateway import METHODS, PKG, SERVICE
from dockerify.frontend.proto import Message, decode, encode, schema


@dataclass
class Solved:
    """One Solve the frontend asked for: the ops by digest and the output it wants."""

    ops: dict[str, Message]
    order: list[str]
    result: tuple[str, int]
    raw: bytes

    def op(self, digest: str) -> Message:
        return self.ops[digest]

    @property
    def result_op(self) -> Message:
        return self.ops[self.result[0]]

    def kind(self, digest: str | None = None) -> str:
        op = self.ops[digest or self.result[0]]
        return op.which("op") or ""


@dataclass
class FakeBridge:
    """Answers Solve through `on_solve` (the ref id to return, or raise a grpc error via abort),
    ReadFile and StatFile from `files`; records everything."""

    on_solve: Callable[[Solved], str]
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    solves: list[Solved] = field(default_factory=list)
    returned: list[Message] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)  # ref id -> error for Solve

    def handle(self, method: str, data: bytes, context: grpc.ServicerContext) -> bytes:
        s = schema()
        req_name, res_name = METHODS[method]
        req = decode(s, PKG + req_name, data)
        res = s.new(PKG + res_name)
        if method == "Solve":
            d = req.Definition
            defs = list(getattr(d, "def"))
            ops = {}
            order = []
            import hashlib

            for raw in defs:
                digest = "sha256:" + hashlib.sha256(raw).hexdigest()
                ops[digest] = decode(s, "pb.Op", raw)
                order.append(digest)
            terminal = ops[order[-1]]
            result = (terminal.inputs[0].digest, terminal.inputs[0].index)
            solved = Solved(ops, order, result, encode(d))
            self.solves.append(solved)
            try:
                ref = self.on_solve(solved)
            except SolveFailure as e:
                context.abort(grpc.StatusCode.UNKNOWN, str(e))
            res.result = s.new(PKG + "Result", ref=s.new(PKG + "Ref", id=ref))
        elif method == "ReadFile":
            key = (req.Ref, req.FilePath)
            if key not in self.files:
                context.abort(grpc.StatusCode.NOT_FOUND, f"open {req.FilePath}: no such file or directory")
            data = self.files[key]
            off = req.Range.Offset if req.Range is not None else 0
            length = req.Range.Length if req.Range is not None and req.Range.Length else len(data)
            res.Data = data[off : off + length]
        elif method == "StatFile":
            key = (req.Ref, req.Path)
            if key not in self.files:
                context.abort(grpc.StatusCode.NOT_FOUND, f"stat {req.Path}: no such file or directory")
            res.stat = s.new("fsutil.types.Stat", path=req.Path, mode=0o644, size=len(self.files[key]))
        elif method == "ResolveImageConfig":
            res.Digest = "sha256:" + "ab" * 32
            res.Config = (
                b'{"architecture":"arm64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}}'
            )
        elif method == "Return":
            self.returned.append(req)
        return encode(res)


class SolveFailure(Exception):
    pass


def _pump(src: Callable[[], bytes], dst: Callable[[bytes], Any], done: Callable[[], None]) -> None:
    try:
        while True:
            data = src()
            if not data:
                break
            dst(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        done()


@contextlib.contextmanager
def serve(bridge: FakeBridge) -> Iterator[tuple[int, int]]:
    """Start the server; yield (read_fd, write_fd) for the frontend's end of the pipe pair."""
    tmp = tempfile.mkdtemp(prefix="fake-bridge-")
    path = os.path.join(tmp, "bridge.sock")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            lambda data, ctx, n=name: bridge.handle(n, data, ctx),
            request_deserializer=None,
            response_serializer=None,
        )
        for name in METHODS
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.strip("/"), handlers),))
    server.add_insecure_port("unix:" + path)
    server.start()
    to_server_r, to_server_w = os.pipe()
    to_client_r, to_client_w = os.pipe()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    threads = [
        threading.Thread(
            target=_pump,
            args=(lambda: os.read(to_server_r, 65536), conn.sendall, lambda: conn.shutdown(socket.SHUT_WR)),
            daemon=True,
        ),
        threading.Thread(
            target=_pump,
            args=(
                lambda: conn.recv(65536),
                lambda d: os.write(to_client_w, d),
                lambda: os.close(to_client_w),
            ),
            daemon=True,
        ),
    ]
    for t in threads:
        t.start()
    try:
        yield to_client_r, to_server_w
    finally:
        server.stop(0)
        conn.close()
        for fd in (to_server_r, to_client_r, to_server_w):
            with contextlib.suppress(OSError):
                os.close(fd)
