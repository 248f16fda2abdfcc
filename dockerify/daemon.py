"""The Docker daemon side: load and save images through the Docker SDK, and the docker CLI that
`run` / `pi` drive. Both reach the daemon that DOCKER_HOST names (else the default socket), so the
same commands work against Docker 20.10 and Docker 26 with the containerd image store."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from typing import Any, BinaryIO

from dockerify.engine import DEFAULT_SOCKET
from dockerify.errors import DockerifyError, NotFound

log = logging.getLogger("dockerify")


#: The docker CLI for `run` / `pi`: a name on PATH or a path (e.g. Docker 26's CLI beside an older one).
CLI_ENV = "DOCKERIFY_DOCKER"


def host() -> str:
    """The daemon's address as the SDK and the CLI read it."""
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"


def client() -> Any:
    import docker

    try:
        c = docker.from_env(timeout=600)
        c.ping()
        return c
    except Exception as e:  # the SDK raises several unrelated types for "no daemon"
        raise DockerifyError(
            f"cannot reach the Docker daemon at {host()}: {type(e).__name__}",
            hint="start dockerd (scripts/start-daemons.sh does) or point DOCKER_HOST at a running one",
        ) from None


def cli() -> Any:
    """A python-on-whales client running the docker CLI named by $DOCKERIFY_DOCKER (default `docker`);
    the CLI inherits DOCKER_HOST and DOCKER_CONFIG from the environment."""
    from python_on_whales import DockerClient

    name = os.environ.get(CLI_ENV) or "docker"
    path = shutil.which(name)
    if path is None:
        raise DockerifyError(
            f"the docker CLI {name!r} is not on PATH",
            hint=f"install docker.io (its CLI), or set {CLI_ENV} to the path of a docker binary",
        )
    return DockerClient(client_call=[path])


def load(archive: Iterator[bytes]) -> list[str]:
    """Stream a docker-archive into the daemon (`docker load`); returns the loaded names."""
    api = client().api
    try:
        result = api.load_image(archive, quiet=True)
    except Exception as e:
        raise DockerifyError(f"docker-daemon: load failed: {e}") from None
    loaded: list[str] = []
    for chunk in result if result is not None else []:
        if "errorDetail" in chunk or "error" in chunk:
            raise DockerifyError(
                f"docker-daemon: load failed: {chunk.get('error') or chunk.get('errorDetail')}"
            )
        stream = chunk.get("stream", "")
        if "Loaded image" in stream:
            loaded.append(stream.split(":", 1)[1].strip())
    return loaded


def save(name: str, out: BinaryIO) -> None:
    """`docker save NAME` into an open file."""
    import docker.errors

    c = client()
    try:
        image = c.images.get(name)
    except docker.errors.ImageNotFound:
        raise NotFound(f"docker-daemon:{name}: no such image in the daemon") from None
    for chunk in image.save(named=True):
        out.write(chunk)
