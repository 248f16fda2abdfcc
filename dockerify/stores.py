"""The one map from a transport prefix to where an image is: `oci:`, `oci-archive:`,
`docker-archive:`, `docker-daemon:`, and registry references (anything else parse_ref accepts).

`open_store` gives the store (oci/store.py's ImageStore) for a reference; `open_layout` gives
the image as an OCI layout on disk (archives and the daemon unpacked, a registry image pulled
into a temporary directory) for the code that reads files. The daemon's store is here too; the
registry's is dockerify/registry/store.py (the registry client needs oras and requests, loaded
only for it, which the frontend image does not have).

The Docker daemon as a store (docker-daemon:NAME[:TAG]) goes through `docker save` and
`docker load` as the rest of dockerify reaches it. The daemon keeps configs and layers'
diff_ids but not manifests: reading rebuilds an OCI manifest from the saved archive."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dockerify import daemon
from dockerify.errors import DockerifyError, NotFound
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.archive import docker_archive_stream, docker_archive_to_layout, safe_extract
from dockerify.oci.layout import Layout
from dockerify.oci.model import Descriptor
from dockerify.oci.refs import ImageRef, parse_ref
from dockerify.oci.store import (
    DockerArchiveStore,
    ImageStore,
    LayoutStore,
    OciArchiveStore,
    StagedStore,
    single_image,
)
from dockerify.paths import require_file


def open_store(ref: str | ImageRef) -> ImageStore:
    """The store for `ref`, not yet read or written (use it as a context manager)."""
    r = parse_ref(ref) if isinstance(ref, str) else ref
    if r.transport == "oci":
        return LayoutStore(r.path, r.tag, str(r))
    if r.transport == "oci-archive":
        return OciArchiveStore(r.path, r.tag)
    if r.transport == "docker-archive":
        return DockerArchiveStore(r.path)
    if r.transport == "docker-daemon":
        return DaemonStore(r.path)
    from dockerify.registry.store import RegistryStore  # oras and requests, only for registries

    return RegistryStore(r.path)


def _with_tag(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


class DaemonStore(StagedStore):
    single_image = True
    keeps_manifests = False

    def __init__(self, name: str) -> None:
        self.name = _with_tag(name)
        super().__init__(f"docker-daemon:{name}", None)

    def _load(self, root: Path) -> tuple[Layout, Descriptor | None]:
        archive = root.parent / "save.tar"
        with open(archive, "wb") as f:
            daemon.save(self.name, f)
        safe_extract(str(archive), root)
        archive.unlink()
        return docker_archive_to_layout(root, self.where)

    def tags(self) -> list[str]:
        return [self.name]

    def write_tag(self, desc: Descriptor, tag: str | None = None, data: bytes | None = None) -> None:
        """`tag` is a tag of this store's repository or a whole NAME:TAG."""
        if data is not None:
            self.write_manifest(desc, data)
        repository = self.name.rsplit(":", 1)[0]
        name = (
            self.name
            if tag is None
            else _with_tag(tag)
            if ":" in tag or "/" in tag
            else f"{repository}:{tag}"
        )
        self._written.append((desc, name))
        self._writable()

    def _commit(self, layout: Layout) -> None:
        for desc, name in self._written:
            image = single_image(layout, desc, self.where)
            daemon.load(docker_archive_stream([(image, [name])]))


@contextlib.contextmanager
def open_layout(ref: ImageRef, max_size: int = DEFAULT_MAX_SIZE) -> Iterator[tuple[Layout, Descriptor]]:
    """The layout holding `ref` and the descriptor of its root (index or manifest).

    Archives and daemon images are unpacked into a temporary directory that is removed on exit;
    a compressed archive that inflates past `max_size` bytes is refused."""
    if ref.transport == "oci":
        if not Path(ref.path).exists():
            raise NotFound(f"{ref}: no such directory")
        layout = Layout.open(ref.path)
        yield layout, layout.resolve(ref.tag)
        return
    with tempfile.TemporaryDirectory(prefix="dockerify-") as tmp:
        root = Path(tmp)
        if ref.transport == "oci-archive":
            require_file(ref.path, str(ref))
            safe_extract(ref.path, root, max_size)
            layout = Layout.open(root)
            yield layout, layout.resolve(ref.tag)
        elif ref.transport == "docker-archive":
            require_file(ref.path, str(ref))
            safe_extract(ref.path, root, max_size)
            yield docker_archive_to_layout(root, str(ref))
        elif ref.transport == "docker-daemon":
            archive = root / "save.tar"
            with open(archive, "wb") as f:
                daemon.save(ref.path, f)
            unpacked = root / "image"
            unpacked.mkdir()
            safe_extract(str(archive), unpacked, max_size)
            archive.unlink()
            yield docker_archive_to_layout(unpacked, str(ref))
        else:
            # The registry client needs oras and requests, which the frontend image does not have.
            from dockerify.registry.pull import pull_to_layout

            yield pull_to_layout(ref.path, root)


__all__ = ["DaemonStore", "DockerifyError", "ImageStore", "open_layout", "open_store"]
