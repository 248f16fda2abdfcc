"""The few Docker Engine API calls of the one-pass `--output docker-daemon:` (daemon_stream.py),
spoken over the daemon's unix socket with the standard library's http.client.

Why not the Docker SDK on this path: importing it (requests, urllib3) takes 0.25-0.35 s before the
first byte can reach the daemon, each of its clients pings the daemon, and urllib3 copies every
piece of a chunked upload once more to put the chunk's size line in front of it. Here a chunk goes
out in one sendmsg of its size line, its bytes and its end, and nothing is copied. A DOCKER_HOST
other than unix:// (tcp://, ssh://, TLS) has no `socket_path()`: the output then takes the SDK's
docker-archive load (daemon.py), as it does with the containerd image store.

Requests use unversioned paths, which the daemon serves at its own API version (1.41 for Docker
20.10, 1.45 for Docker 26); the calls here are the same in both."""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from dockerify.errors import DockerifyError

DEFAULT_SOCKET = "/var/run/docker.sock"
_TIMEOUT = 600.0  # seconds without progress on the socket: a daemon busy applying a large layer
try:
    _IOV_MAX = os.sysconf("SC_IOV_MAX")  # sendmsg refuses more pieces than this at once
except (ValueError, OSError):
    _IOV_MAX = 1024


def socket_path() -> str | None:
    """The daemon's unix socket as DOCKER_HOST names it (the default socket when unset), or None
    for any other kind of address."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def messages(self) -> Iterator[dict[str, Any]]:
        """The JSON objects of a progress stream (one per line); other lines are skipped."""
        for line in self.body.splitlines():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                yield message

    def error(self) -> str | None:
        """The daemon's own words for a failed call: the status's message, or an error in a
        stream that began with 200 (the import and load endpoints report failures that way)."""
        if self.status >= 400:
            try:
                return str(self.json().get("message") or self.body[:200])
            except (ValueError, AttributeError):
                return self.body[:200].decode("utf-8", "replace") or f"HTTP {self.status}"
        for message in self.messages():
            if "error" in message or "errorDetail" in message:
                detail = message.get("errorDetail")
                return str(
                    message.get("error") or (detail.get("message") if isinstance(detail, dict) else detail)
                )
        return None

    def check(self, what: str) -> Reply:
        """This reply, or a DockerifyError saying `what` failed in the daemon's words."""
        problem = self.error()
        if problem is not None:
            raise DockerifyError(f"{what}: {problem}")
        return self


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=_TIMEOUT)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Engine:
    """One daemon, one connection per call (the daemon keeps none open between them)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _unreachable(self, e: OSError) -> DockerifyError:
        return DockerifyError(
            f"cannot reach the Docker daemon at unix://{self.path}: {e.strerror or e}",
            hint="start dockerd (scripts/start-daemons.sh does) or point DOCKER_HOST at a running one",
        )

    def _open(self) -> _UnixConnection:
        conn = _UnixConnection(self.path)
        try:
            conn.connect()
        except OSError as e:
            raise self._unreachable(e) from None
        return conn

    def call(self, method: str, path: str, body: bytes | None = None, content_type: str = "") -> Reply:
        conn = self._open()
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return Reply(resp.status, resp.read())
        except OSError as e:
            raise self._unreachable(e) from None
        finally:
            conn.close()

    def upload(self, path: str, chunks: Iterable[bytes], content_type: str) -> Reply:
        """POST a body of unknown length (chunked transfer coding), one HTTP chunk per piece.
        An exception from `chunks` leaves the body unfinished: the daemon sees it cut short and
        keeps nothing of it."""
        conn = self._open()
        try:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            conn.putheader("Content-Type", content_type)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            sock = conn.sock
            try:
                for data in chunks:
                    if data:
                        send_all(sock, [b"%x\r\n" % len(data), data, b"\r\n"])
                send_all(sock, [b"0\r\n\r\n"])
            except OSError as e:
                # The daemon stopped reading: what it answered says why, when it answered at all.
                try:
                    resp = conn.getresponse()
                    return Reply(resp.status, resp.read())
                except (OSError, http.client.HTTPException):
                    raise DockerifyError(
                        f"the Docker daemon at unix://{self.path} closed the upload: {e.strerror or e}"
                    ) from None
            resp = conn.getresponse()
            return Reply(resp.status, resp.read())
        except http.client.HTTPException as e:
            raise DockerifyError(f"the Docker daemon at unix://{self.path} gave no answer: {e!r}") from None
        finally:
            conn.close()


def send_all(sock: socket.socket, pieces: list[bytes]) -> None:
    """Write the pieces in order with as few sendmsg calls as the kernel takes, resuming after a
    partial write (a socket with a timeout may take only part of what it is given)."""
    views = [memoryview(p) for p in pieces if p]
    first = 0
    while first < len(views):
        sent = sock.sendmsg(views[first : first + _IOV_MAX])
        while sent:
            size = len(views[first])
            if sent >= size:
                sent -= size
                first += 1
            else:
                views[first] = views[first][sent:]
                sent = 0


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe=":")


def connect() -> Engine | None:
    path = socket_path()
    return None if path is None else Engine(path)


__all__ = ["DEFAULT_SOCKET", "Engine", "Reply", "connect", "quote", "send_all", "socket_path"]
