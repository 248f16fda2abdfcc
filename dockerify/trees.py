"""Any tree the CLI can name, as entries: a disk image, tarball or directory, or one platform of
an image reference."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dockerify.entry import Entry
from dockerify.fixups import restore_tree
from dockerify.oci.flatten import flatten
from dockerify.oci.layout import Layout
from dockerify.oci.model import Descriptor
from dockerify.oci.refs import ImageRef, image_ref, resolve_ref
from dockerify.oci.select import Image, select
from dockerify.platform import Platform
from dockerify.sources import DEFAULT_MAX_SIZE, open_source
from dockerify.sources.options import DEFAULT_READ, ReadOptions
from dockerify.stores import open_layout


def is_image_ref(text: str) -> bool:
    """Whether `text` names an image rather than a tree to read (oci.refs.resolve_ref's rule)."""
    return resolve_ref(text) is not None


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
    ref = image_ref(text)
    opener: contextlib.AbstractContextManager[tuple[Layout, Descriptor]]
    if verify_key is not None:
        from dockerify.registry.verified import open_verified_layout

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
    from dockerify.registry.client import Options
    from dockerify.registry.pull import fetch_into

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
            yield Tree(
                text,
                lambda: (
                    restore_tree(flatten(image, max_size=max_size), image.labels)
                    if restore_fixups
                    else flatten(image, max_size=max_size)
                ),
                image,
            )
        return
    with open_source(text, max_size=max_size, read=read) as source:
        yield Tree(text, source.entries)
