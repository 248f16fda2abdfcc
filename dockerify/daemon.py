"""The Docker daemon side: load and save images through the Docker SDK, and the docker CLI that
`run` / `pi` drive. Both reach the daemon that DOCKER_HOST names (else the default socket), so the
same commands work against Docker 20.10 and Docker 26 with the containerd image store."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockerify.errors import DockerifyError, NotFound

log = logging.getLogger("dockerify")


#: The docker CLI for `run` / `pi`: a name on PATH or a path (e.g. Docker 26's CLI beside an older one).
CLI_ENV = "DOCKERIFY_DOCKER"


def host() -> str:
    """The daemon's address as the SDK and the CLI read it."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


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


@dataclass(frozen=True)
class ImportedLayer:
    """What the import endpoint made of a layer stream: an untagged image around one layer."""

    image_id: str
    #: The sha256 of the stream as the daemon received it (its diff_id), read back rather than
    #: hashed a second time on our side.
    diff_id: str


def import_layer(chunks: Iterator[bytes]) -> ImportedLayer:
    """Stream a layer tar to the import endpoint (applied straight to the layer store, no
    staging)."""
    api = client().api
    try:
        text = api.import_image_from_stream(chunks)
    except Exception as e:
        raise DockerifyError(f"docker-daemon: import of the layer failed: {e}") from None
    image_id = ""
    for line in str(text).splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "error" in message or "errorDetail" in message:
            raise DockerifyError(
                f"docker-daemon: import of the layer failed: {message.get('error') or message.get('errorDetail')}"
            )
        status = message.get("status", "")
        if isinstance(status, str) and status.startswith("sha256:"):
            image_id = status
    if not image_id:
        raise DockerifyError(f"docker-daemon: the import gave no image id ({str(text)[:200]!r})")
    try:
        layers = (api.inspect_image(image_id).get("RootFS") or {}).get("Layers") or []
    except Exception as e:
        raise DockerifyError(
            f"docker-daemon: the imported image {image_id} cannot be read back: {e}"
        ) from None
    if len(layers) != 1 or not str(layers[0]).startswith("sha256:"):
        remove_image(image_id)
        raise DockerifyError(f"docker-daemon: the imported image {image_id} holds layers {layers}, not one")
    return ImportedLayer(image_id, str(layers[0]))


def remove_image(image_id: str) -> None:
    """Remove an image by id, quietly: used for the import's temporary image."""
    try:
        client().api.remove_image(image_id, noprune=False)
    except Exception as e:  # cleanup: say so, do not fail what already succeeded
        log.debug("removing %s failed: %s", image_id, e)


def containerd_store() -> bool:
    """True when the daemon keeps images in containerd's store (Docker 26 with the snapshotter)."""
    info = client().info()
    status = info.get("DriverStatus") or []
    return any(pair and pair[-1] == "io.containerd.snapshotter.v1" for pair in status)
