"""A client of BuildKit's `moby.buildkit.v1.frontend.LLBBridge`: the calls the frontend makes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from dockerify.errors import DockerifyError
from dockerify.frontend.proto import Message, Schema, decode, encode, schema
from dockerify.frontend.transport import FdTransport, rpc_message
from dockerify.platform import Platform

log = logging.getLogger("dockerify")
SERVICE = "/moby.buildkit.v1.frontend.LLBBridge/"
PKG = "moby.buildkit.v1.frontend."

# Method -> (request, response) message names.
METHODS = {
    "ResolveImageConfig": ("ResolveImageConfigRequest", "ResolveImageConfigResponse"),
    "Solve": ("SolveRequest", "SolveResponse"),
    "ReadFile": ("ReadFileRequest", "ReadFileResponse"),
    "StatFile": ("StatFileRequest", "StatFileResponse"),
    "Ping": ("PingRequest", "PongResponse"),
    "Return": ("ReturnRequest", "ReturnResponse"),
}

# Chunks for ReadFile: grpc-go on BuildKit's side sends at most this in one message comfortably.
READ_CHUNK = 2 << 20


class SolveError(DockerifyError):
    """BuildKit could not solve a definition (an exec failed, a file was missing...); `detail`
    is BuildKit's own message."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass(frozen=True)
class ImageInfo:
    digest: str
    config: dict[str, Any]


def platform_message(s: Schema, p: Platform) -> Message:
    return s.new("pb.Platform", Architecture=p.architecture, OS=p.os, Variant=p.variant or "")


class Bridge:
    """One frontend's connection to BuildKit."""

    def __init__(self, transport: FdTransport, s: Schema | None = None) -> None:
        self.schema = s or schema()
        self._calls = {
            name: transport.unary(SERVICE + name, encode, self._decoder(PKG + res))
            for name, (_req, res) in METHODS.items()
        }

    def _decoder(self, name: str) -> Callable[[bytes], Message]:
        return lambda data: decode(self.schema, name, data)

    def new(self, name: str, **values: Any) -> Message:
        return self.schema.new(name if "." in name else PKG + name, **values)

    def _call(self, method: str, request: Message) -> Message:
        return self._calls[method](request)  # type: ignore[no-any-return]

    def ping(self) -> Message:
        return self._call("Ping", self.new("PingRequest"))

    def solve(self, definition: Message, what: str) -> str:
        """Solve `definition` and return the id of its result reference."""
        # Evaluate: BuildKit otherwise solves lazily, at export time, after Return, and a failing
        # RUN would reach the user as its bare exec error instead of the build file's line.
        req = self.new(
            "SolveRequest",
            Definition=definition,
            allowResultReturn=True,
            allowResultArrayRef=True,
            Evaluate=True,
        )
        log.info("solve: %s", what)
        try:
            res = self._call("Solve", req)
        except grpc.RpcError as e:
            log.info("solve failed (%s): %s", what, rpc_message(e))
            raise SolveError(f"{what}: {rpc_message(e)}", rpc_message(e)) from None
        if res.result is not None:
            kind = res.result.which("result")
            if kind == "ref":
                return str(res.result.ref.id)
            if kind == "refDeprecated":
                return str(res.result.refDeprecated)
        return str(res.ref)

    def read_file(self, ref: str, path: str) -> bytes:
        out = bytearray()
        while True:
            req = self.new(
                "ReadFileRequest",
                Ref=ref,
                FilePath=path,
                Range=self.new("FileRange", Offset=len(out), Length=READ_CHUNK),
            )
            try:
                data = self._call("ReadFile", req).Data
            except grpc.RpcError as e:
                raise SolveError(f"reading {path}: {rpc_message(e)}") from None
            out += data
            if len(data) < READ_CHUNK:
                return bytes(out)

    def stat_file(self, ref: str, path: str) -> Message | None:
        try:
            stat: Message | None = self._call(
                "StatFile", self.new("StatFileRequest", Ref=ref, Path=path)
            ).stat
            return stat
        except grpc.RpcError:
            return None

    def resolve_image_config(
        self, ref: str, platform: Platform | None, mode: str, log_name: str
    ) -> ImageInfo:
        """The image's config. Without a platform, a local image of any platform is taken as it is
        (dockerd skips its local store for a platform the image does not have)."""
        req = self.new("ResolveImageConfigRequest", Ref=ref, ResolveMode=mode, LogName=log_name)
        if platform is not None:
            req.Platform = platform_message(self.schema, platform)
        try:
            res = self._call("ResolveImageConfig", req)
        except grpc.RpcError as e:
            raise SolveError(f"resolving image {ref}: {rpc_message(e)}") from None
        try:
            config = json.loads(res.Config) if res.Config else {}
        except ValueError:
            raise SolveError(f"image {ref}: its config is not JSON") from None
        return ImageInfo(str(res.Digest), config)

    def return_result(self, result: Message) -> None:
        self._call("Return", self.new("ReturnRequest", result=result))

    def return_error(self, message: str) -> None:
        status = self.schema.new("google.rpc.Status", code=2, message=message)  # 2: UNKNOWN
        self._call("Return", self.new("ReturnRequest", error=status))

    def result(self, refs: Mapping[str, str], metadata: Mapping[str, bytes], single: bool) -> Message:
        """A Result: one `ref` for a single-platform build, else `refs` keyed by platform id."""
        if single:
            (ref,) = refs.values()
            return self.new("Result", ref=self.new("Ref", id=ref), metadata=dict(metadata))
        refmap = self.new("RefMap", refs={k: self.new("Ref", id=v) for k, v in refs.items()})
        return self.new("Result", refs=refmap, metadata=dict(metadata))
