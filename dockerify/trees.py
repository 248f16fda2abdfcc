"""Any tree the CLI can name, as entries: a disk image, tarball or directory, or one platform of
an image reference."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dockerify.entry import Entry
from dockerify.errors import DockerifyError
from dockerify.oci.flatten import flatten
from dockerify.oci.layout import Layout
from dockerify.oci.local import open_layout
from dockerify.oci.model import Descriptor
from dockerify.oci.refs import TRANSPORTS, ImageRef, parse_ref
from dockerify.oci.select import Image, select
from dockerify.platform import Platform
from dockerify.sources import DEFAULT_MAX_SIZE, open_source
from dockerify.sources.options import DEFAULT_READ, ReadOptions


def is_image_ref(text: str) -> bool:
    """A transport-prefixed reference, or a registry reference that is not a local path."""
    if text.split(":", 1)[0] in TRANSPORTS:
        return True
    return (
        parse_ref_or_none(text) is not None and not os.path.exists(text) and not text.startswith((".", "/"))
    )


def parse_ref_or_none(text: str) -> ImageRef | None:
    try:
        ref = parse_ref(text)
    except DockerifyError:
        return None
    return ref if ref.transport == "registry" and "/" in text else None


@dataclass
class Tree:
    name: str
    entries: Callable[[], Iterator[Entry]]
    image: Image | None = None


@contextlib.contextmanager
def open_image(
    text: str, platform: Platform | None, verify_key: str | None = None, max_size: int = DEFAULT_MAX_SIZE
) -> Iterator[Image]:
    """One platform of an image reference. With `verify_key`, an image whose cosign-format
    signature is missing or does not verify is refused before any of it is used. A compressed
    archive that inflates past `max_size` bytes is refused (its layers are bounded by flatten)."""
    ref = parse_ref(text)
    opener: contextlib.AbstractContextManager[tuple[Layout, Descriptor]]
    if verify_key is not None:
        from dockerify.registry import open_verified_layout

        opener = open_verified_layout(ref, verify_key)
    elif ref.transport == "registry":
        opener = _pulled(ref, platform)
    else:
        opener = open_layout(ref, max_size)
    with opener as (layout, root):
        yield select(layout, root, platform, str(ref))


@contextlib.contextmanager
def _pulled(ref: ImageRef, platform: Platform | None) -> Iterator[tuple[Layout, Descriptor]]:
    """A registry image (only `platform` of an index, when given) pulled through the verifying
    client into a temporary layout, removed on exit: blobs stream to files, so memory stays
    bounded whatever the image size."""
    from dockerify.registry import Options, fetch_into

    with tempfile.TemporaryDirectory(prefix="dockerify-pull-") as tmp:
        layout = Layout.create(tmp)
        root = fetch_into(layout, ref.path, platform, Options.from_env())
        yield layout, root


@contextlib.contextmanager
def open_tree(
    text: str,
    *,
    platform: Platform | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    restore_fixups: bool = True,
    read: ReadOptions = DEFAULT_READ,
) -> Iterator[Tree]:
    if is_image_ref(text):
        with open_image(text, platform, max_size=max_size) as image:
            yield Tree(text, lambda: flatten(image, restore_fixups=restore_fixups, max_size=max_size), image)
        return
    with open_source(text, max_size=max_size, read=read) as source:
        yield Tree(text, source.entries)
