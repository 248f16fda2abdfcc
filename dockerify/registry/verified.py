"""Opening an image only when its signature verifies: what `--verify-key` does for pull,
export and run."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dockerify.errors import DockerifyError
from dockerify.oci.archive import safe_extract
from dockerify.oci.layout import Layout
from dockerify.oci.model import Descriptor
from dockerify.oci.refs import ImageRef, image_ref
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.pull import fetch_into
from dockerify.registry.reference import parse_reference
from dockerify.registry.signing import LayoutStore, load_public_key, verify_digest

log = logging.getLogger("dockerify")


@contextlib.contextmanager
def open_verified_layout(
    ref: ImageRef | str, key_path: str, options: Options | None = None
) -> Iterator[tuple[Layout, Descriptor]]:
    """Like `dockerify.stores.open_layout`, but refuses an image whose signature is missing
    or does not verify with the public key at `key_path`.

    Registry images are resolved to a digest, that digest's signature is checked, and only then
    is the image fetched (by digest). oci: and oci-archive: layouts are checked against the
    signatures they hold. Docker archives and the daemon hold no signatures and are refused."""
    ref = image_ref(ref) if isinstance(ref, str) else ref
    key = load_public_key(key_path)
    if ref.transport == "registry":
        r = parse_reference(ref.path)
        client = RegistryClient(r, options or Options.from_env())
        with tempfile.TemporaryDirectory(prefix="dockerify-") as tmp:
            layout = Layout.create(tmp)
            root = fetch_into(layout, r, client=client, verify_key=key_path)
            layout.tag(root, r.tag or "latest")
            yield layout, root
        return
    if ref.transport == "oci":
        store = LayoutStore(Layout.open(ref.path), ref.tag, str(ref))
        root = store.resolve()
        verify_digest(store, root.digest, key, key_path)
        yield store.layout, root
        return
    if ref.transport == "oci-archive":
        with tempfile.TemporaryDirectory(prefix="dockerify-") as tmp:
            safe_extract(ref.path, Path(tmp))
            store = LayoutStore(Layout.open(tmp), ref.tag, str(ref))
            root = store.resolve()
            verify_digest(store, root.digest, key, key_path)
            yield store.layout, root
        return
    raise DockerifyError(
        f"{ref}: a {ref.transport} image holds no signatures, so --verify-key cannot check it",
        hint="use the registry reference or an oci:/oci-archive: copy that carries its signature",
    )
