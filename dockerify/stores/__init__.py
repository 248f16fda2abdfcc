"""The one map from an image reference's transport prefix to its store (oci/store.py's
ImageStore): `oci:`, `oci-archive:`, `docker-archive:`, `docker-daemon:`, and registry
references (anything else parse_ref accepts)."""

from __future__ import annotations

from dockerify.oci.refs import ImageRef, parse_ref
from dockerify.oci.store import DockerArchiveStore, ImageStore, LayoutStore, OciArchiveStore
from dockerify.stores.daemon import DaemonStore
from dockerify.stores.registry import RegistryStore


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
    return RegistryStore(r.path)


__all__ = ["open_store", "ImageStore"]
