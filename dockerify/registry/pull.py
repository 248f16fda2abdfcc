"""A registry image (one manifest or a whole index) into an OCI layout, every byte verified.

Manifests are kept as the exact bytes the registry sent (checked against their digests), blobs
stream to temporary files and are renamed into the layout only after their size and sha256
match the descriptor. `pull` first fetches everything into a staging layout and moves it into
the destination at the end, so a failure leaves nothing behind."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dockerify import umask
from dockerify.errors import CorruptInput, DockerifyError
from dockerify.oci.blobs import BlobStore
from dockerify.oci.graph import walk
from dockerify.oci.layout import Layout
from dockerify.oci.manifests import choose_platform
from dockerify.oci.mediatype import document_media_type, is_index
from dockerify.oci.model import Descriptor, parse_json_object
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference
from dockerify.registry.signing import RegistryStore, load_public_key, verify_digest
from dockerify.registry.transfer import TransferStats

log = logging.getLogger("dockerify")
_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)


def _parse(data: bytes, media_type: str, where: str) -> dict[str, Any]:
    if media_type in _SCHEMA1:
        raise DockerifyError(f"{where}: a Docker schema 1 manifest, which dockerify does not read")
    body = parse_json_object(data, f"{where}: the manifest")
    if body.get("schemaVersion") == 1:
        raise DockerifyError(f"{where}: a Docker schema 1 manifest, which dockerify does not read")
    return body


def _media_type(media_type: str, body: dict[str, Any]) -> str:
    return document_media_type(media_type, body)


def _store_blob(
    layout: Layout,
    client: RegistryClient,
    d: Descriptor,
    advance: Callable[[int], object],
    stats: TransferStats | None = None,
) -> None:
    target = layout.blobs.path(d.digest)
    if target.exists():
        if stats:
            stats.skipped(d.size)
        return
    fd, tmp = umask.mkstemp(dir=layout.blobs.root, prefix=".tmp-")
    os.close(fd)
    try:
        client.fetch_blob_to(d.digest, d.size, Path(tmp), advance)
        os.replace(tmp, target)
        if stats:
            stats.moved(d.size)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fetch_into(
    layout: Layout,
    reference: str | Reference,
    platform: Platform | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
    verify_key: str | None = None,
    client: RegistryClient | None = None,
    have: BlobStore | None = None,
    stats: TransferStats | None = None,
) -> Descriptor:
    """Fetch the image into `layout`'s blobs (index.json untouched); return its root descriptor.

    With `verify_key`, the root's signature is checked before anything else is fetched. Blobs
    `layout` or `have` (the destination, when pulling into a layout that already holds an
    earlier version) already hold are not fetched; `stats` counts what moved."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    client = client or RegistryClient(ref, options)
    where = str(ref)
    data, media_type, digest = client.get_manifest_bytes(ref.reference)
    body = _parse(data, media_type, where)
    root = Descriptor(_media_type(media_type, body), digest, len(data))
    if verify_key is not None:
        verified = verify_digest(RegistryStore(client, ref), digest, load_public_key(verify_key), verify_key)
        log.info("%s: signature verified (%s)", where, verified.digest)
    if platform is not None and is_index(root.media_type, body):
        child = choose_platform([Descriptor.from_json(d) for d in body.get("manifests", [])], platform, where)
        data, media_type, _ = client.get_manifest_bytes(child.digest)
        if len(data) != child.size:
            raise CorruptInput(
                f"{where}: manifest {child.digest} is {len(data)} bytes, the index says {child.size}"
            )
        body = _parse(data, media_type, f"{where}@{child.digest}")
        root = Descriptor(
            child.media_type or _media_type(media_type, body), child.digest, child.size, child.platform
        )

    def fetch(desc: Descriptor) -> tuple[bytes, str, dict[str, Any]]:
        if desc.digest == root.digest:
            return data, root.media_type, body
        cdata, ctype, _ = client.get_manifest_bytes(desc.digest)
        if len(cdata) != desc.size:
            raise CorruptInput(
                f"{where}: manifest {desc.digest} is {len(cdata)} bytes, the index says {desc.size}"
            )
        return cdata, ctype, _parse(cdata, ctype, f"{where}@{desc.digest}")

    graph = walk(root, fetch)
    manifests, blobs = graph.manifests, graph.blobs
    progress = progress or Progress(quiet=True)
    todo = [d for d in blobs.values() if not layout.blobs.has(d.digest) and not (have and have.has(d.digest))]
    if stats:
        for d in blobs.values():
            if d not in todo:
                stats.skipped(d.size)
    lock = threading.Lock()
    with progress.task(f"pulling {where}", total=sum(d.size for d in todo)) as bar:

        def advance(n: int) -> None:
            with lock:
                bar(n)

        if todo:
            with ThreadPoolExecutor(max_workers=max(1, min(client.options.jobs, len(todo)))) as pool:
                futures = [
                    pool.submit(_store_blob, layout, client, d, advance, stats)
                    for d in sorted(todo, key=lambda d: -d.size)
                ]
                try:
                    for f in futures:
                        f.result()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    for desc, mdata in manifests:
        if layout.blobs.put(mdata) != desc.digest:  # already checked; cheap to be sure
            raise CorruptInput(f"{where}: manifest {desc.digest} changed while being stored")
    if root.platform is None and not is_index(root.media_type, body):
        root = Descriptor(root.media_type, root.digest, root.size, _config_platform(layout, body, have))
    return root


def _config_platform(
    layout: Layout, manifest: dict[str, Any], have: BlobStore | None = None
) -> Platform | None:
    """The platform an image config names, for the descriptor of a single-manifest image."""
    try:
        desc = Descriptor.from_json(manifest["config"])
        if have is not None and not layout.blobs.has(desc.digest) and have.has(desc.digest):
            config = parse_json_object(have.read(desc.digest), "the image config")
        else:
            config = layout.read_json(desc)
    except (DockerifyError, KeyError, TypeError, ValueError):
        return None
    if not config.get("architecture") or not config.get("os"):
        return None
    return Platform.from_oci(config)


def pull_to_layout(reference: str, root_dir: str | Path) -> tuple[Layout, Descriptor]:
    """The hook `open_layout` uses for registry references: the whole image into a new layout
    at `root_dir`, its root tagged with the reference's tag. Options come from DOCKERIFY_* variables."""
    ref = parse_reference(reference)
    layout = Layout.create(root_dir)
    root = fetch_into(layout, ref, options=Options.from_env())
    layout.tag(root, ref.tag or "latest")
    return layout, root


def move_blobs(staging: Layout, layout: Layout) -> None:
    for path in staging.blobs.root.iterdir():
        if path.name.startswith("."):
            continue
        target = layout.blobs.root / path.name
        if target.exists():
            continue
        try:
            os.replace(path, target)
        except OSError:  # another filesystem
            tmp = layout.blobs.root / f".tmp-{path.name}"
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)


@contextlib.contextmanager
def staging_layout(parent: Path) -> Iterator[Layout]:
    tmp = tempfile.mkdtemp(dir=parent, prefix=".pull-")
    try:
        yield Layout.create(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
