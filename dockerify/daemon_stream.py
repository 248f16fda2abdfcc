"""`--output docker-daemon:` in one pass: the layer goes from the source straight into the daemon's
layer store while it is being produced, and the image (our config, our platform) is then loaded
around it.

`docker load` cannot take a layer in one pass: the daemon first unpacks the whole archive into a
temporary directory (moby's tarexport), and a tar member's size must be known before its bytes,
while the layer's size and digest are known only at its end. The import endpoint
(`POST /images/create?fromSrc=-`) does apply a tar stream directly to the layer store, but it
makes a config of its own (Docker 20.10 ignores the platform, and `created` is the time of the
import). So both are used, each for what it does well:

1. the layer, as it is written, is streamed to the import endpoint (bounded queue, no temporary
   file on either side); the daemon registers it under its diff_id, the sha256 of those bytes;
2. a docker-archive holding only our config and manifest.json (the layer member empty) is
   loaded: the daemon finds the layer's chain id already in its store and does not read the
   member, so the loaded image has exactly the config, platform and id a full load would give;
3. the import's own image is removed (the layer stays: the loaded image holds it).

The containerd image store (Docker 26 with the containerd snapshotter) keeps blobs, not layers,
and needs the layer in the archive: there the full docker-archive is loaded instead, as it is for a
daemon reached other than by its unix socket (engine.py speaks to the socket).
"""

from __future__ import annotations

import json
import logging
import queue
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from dockerify import engine
from dockerify.errors import DockerifyError
from dockerify.oci.blobs import BlobStore
from dockerify.oci.layout import Layout
from dockerify.oci.select import Image

log = logging.getLogger("dockerify")

_DEPTH = 16  # pieces (of up to a few MiB each) waiting for the daemon: memory stays bounded
_EMPTY_LAYER = "layer.tar"
_ABORT = b"\0abort"  # a marker compared by identity, never sent


@dataclass(frozen=True)
class ImportedLayer:
    """What the import endpoint made of a layer stream: an untagged image around one layer."""

    image_id: str
    #: The sha256 of the stream as the daemon received it (its diff_id), read back rather than
    #: hashed a second time on our side.
    diff_id: str


def import_layer(api: engine.Engine, chunks: Iterator[bytes]) -> ImportedLayer:
    """Stream a layer tar to the import endpoint (applied straight to the layer store, no
    staging)."""
    reply = api.upload("/images/create?fromSrc=-", chunks, "application/x-tar").check(
        "docker-daemon: import of the layer failed"
    )
    image_id = ""
    for message in reply.messages():
        status = message.get("status", "")
        if isinstance(status, str) and status.startswith("sha256:"):
            image_id = status
    if not image_id:
        raise DockerifyError(f"docker-daemon: the import gave no image id ({reply.body[:200]!r})")
    found = api.call("GET", f"/images/{engine.quote(image_id)}/json").check(
        f"docker-daemon: the imported image {image_id} cannot be read back"
    )
    layers = (found.json().get("RootFS") or {}).get("Layers") or []
    if len(layers) != 1 or not str(layers[0]).startswith("sha256:"):
        remove_image(api, image_id)
        raise DockerifyError(f"docker-daemon: the imported image {image_id} holds layers {layers}, not one")
    return ImportedLayer(image_id, str(layers[0]))


def remove_image(api: engine.Engine, image_id: str) -> None:
    """Remove the import's temporary image by id, quietly (the loaded image keeps its layer)."""
    try:
        problem = api.call("DELETE", f"/images/{engine.quote(image_id)}").error()
    except DockerifyError as e:
        problem = e.message
    if problem is not None:  # cleanup: say so, do not fail what already succeeded
        log.debug("removing %s failed: %s", image_id, problem)


def load(api: engine.Engine, archive: Iterator[bytes]) -> None:
    """`docker load` of a small archive (the config-only one)."""
    api.call("POST", "/images/load?quiet=1", b"".join(archive), "application/x-tar").check(
        "docker-daemon: load failed"
    )


class _ImportWriter:
    """A blob writer that sends the bytes to the daemon's import endpoint instead of a file."""

    def __init__(self, store: StreamingBlobs) -> None:
        self._store = store
        self.size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(_DEPTH)
        self._imported: ImportedLayer | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._send, name="dockerify-import", daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[bytes]:
        while (data := self._queue.get()) is not None:
            if data is _ABORT:
                # Break the request off mid-stream: the daemon sees a truncated upload and
                # registers nothing, rather than a layer cut short.
                raise DockerifyError("docker-daemon: the layer was not finished")
            yield data

    def _send(self) -> None:
        try:
            self._imported = import_layer(self._store.api, self._chunks())
        except BaseException as e:  # handed to the producer at its next write or at commit
            self._error = e
            while self._queue.get() is not None:  # let the producer finish its writes
                pass

    def _put(self, data: bytes | None) -> None:
        while True:
            try:
                self._queue.put(data, timeout=0.5)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise()

    def _raise(self) -> NoReturn:
        if self._error is not None:
            raise self._error
        raise DockerifyError("docker-daemon: the import of the layer stopped")

    def write(self, data: bytes) -> None:
        if self._error is not None:
            self._raise()
        self.size += len(data)
        self._put(bytes(data))

    def commit(self) -> str:
        self._put(None)
        self._thread.join()
        if self._imported is None:
            self._raise()
        self._store.imported.append(self._imported.image_id)
        # The daemon hashed the stream as it took it in: its diff_id is the layer's digest.
        return self._imported.diff_id

    def abort(self) -> None:
        if self._thread.is_alive():
            self._put(_ABORT)
            self._put(None)
            self._thread.join()
        if self._imported is not None:
            self._store.imported.append(self._imported.image_id)


class StreamingBlobs(BlobStore):
    """Small blobs (config, manifests) go to the layout as usual; layers to the daemon."""

    def __init__(self, layout_dir: str | Path, api: engine.Engine) -> None:
        super().__init__(layout_dir)
        self.api = api
        self.imported: list[str] = []

    def writer(self) -> _ImportWriter:  # type: ignore[override]
        return _ImportWriter(self)


def one_pass_layout(root: str | Path, api: engine.Engine) -> Layout:
    layout = Layout.create(root)
    layout.blobs = StreamingBlobs(root, api)
    return layout


def _member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    return info.tobuf(tarfile.PAX_FORMAT) + data + bytes(-len(data) % 512)


def config_only_archive(image: Image, tags: list[str]) -> Iterator[bytes]:
    """A docker-archive with the image's config and empty layer members (see the module doc)."""
    cfg = image.config_descriptor
    config = image.layout.blobs.read(cfg.digest)
    names = [f"{i}/{_EMPTY_LAYER}" for i in range(len(image.layers))]
    manifest = [{"Config": f"{cfg.hex}.json", "RepoTags": tags, "Layers": names}]
    yield _member(f"{cfg.hex}.json", config)
    for name in names:
        yield _member(name, b"")
    yield _member("manifest.json", json.dumps(manifest).encode())
    yield bytes(1024)


def finish(layout: Layout, image: Image, target: str) -> None:
    """Load the config around the layer already imported, then drop the import's own image."""
    store = layout.blobs
    assert isinstance(store, StreamingBlobs)
    try:
        load(store.api, config_only_archive(image, [target]))
    finally:
        cleanup(store)


def cleanup(store: BlobStore) -> None:
    if isinstance(store, StreamingBlobs):
        for image_id in store.imported:
            remove_image(store.api, image_id)
        store.imported.clear()


def one_pass_engine() -> engine.Engine | None:
    """The daemon's socket when one pass can be taken: it needs the daemon's unix socket and the
    classic layer store (containerd's needs the layer's bytes in the archive)."""
    api = engine.connect()
    if api is None:
        log.debug("docker-daemon: DOCKER_HOST is not a unix socket; loading a docker-archive")
        return None
    info = api.call("GET", "/info").check("docker-daemon: the daemon's info cannot be read")
    status = info.json().get("DriverStatus") or []
    if any(pair and pair[-1] == "io.containerd.snapshotter.v1" for pair in status):
        return None
    return api


__all__ = ["ImportedLayer", "cleanup", "finish", "import_layer", "one_pass_engine", "one_pass_layout"]
