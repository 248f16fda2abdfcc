"""The Docker daemon side: load and save images through the Docker SDK."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, BinaryIO

from dockerify.errors import DockerifyError, NotFound

log = logging.getLogger("dockerify")


def client() -> Any:
    import docker

    try:
        c = docker.from_env(timeout=600)
        c.ping()
        return c
    except Exception as e:  # the SDK raises several unrelated types for "no daemon"
        raise DockerifyError(
            f"cannot reach the Docker daemon: {type(e).__name__}",
            hint="start dockerd (scripts/setup-daemons.sh does) or set DOCKER_HOST",
        ) from None


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
