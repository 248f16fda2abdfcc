"""The one map from a transport prefix to where an image is: an OCI layout, an archive, the Docker
daemon or a registry (pulled into a temporary layout)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dockerify import daemon
from dockerify.errors import DockerifyError, NotFound
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.archive import docker_archive_to_layout, safe_extract
from dockerify.oci.layout import Layout
from dockerify.oci.model import Descriptor
from dockerify.oci.refs import ImageRef
from dockerify.paths import require_file


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


__all__ = ["open_layout", "DockerifyError"]
