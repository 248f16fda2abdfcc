"""Copy an image or a whole index between any two stores (oci/store.py's ImageStore).

Manifest documents travel as the exact bytes the source holds, so digests do not change where
both stores keep manifests; blobs go children first, then manifests children first, then the
root under the tag, so a reader of the destination never sees a manifest whose parts are
missing."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockerify.errors import DockerifyError, NotFound
from dockerify.oci.graph import walk
from dockerify.oci.mediatype import is_index
from dockerify.oci.model import OCI_INDEX, Descriptor, ImageConfig, Index, parse_json_object, sha256_digest
from dockerify.oci.store import ImageStore
from dockerify.platform import Platform
from dockerify.progress import Progress


@dataclass(frozen=True)
class CopyResult:
    root: Descriptor
    manifests: tuple[Descriptor, ...]
    blobs_copied: int
    blobs_skipped: int
    bytes_copied: int


def _norm(p: Platform) -> str:
    try:
        return str(Platform.parse(str(p)))
    except DockerifyError:
        return str(p)


def _is_image(desc: Descriptor) -> bool:
    # Attestations and signatures sit in indexes with platform unknown/unknown.
    return desc.platform is None or desc.platform.architecture != "unknown"


def _choose(children: list[Descriptor], platforms: Sequence[Platform], where: str) -> list[Descriptor]:
    wanted = {_norm(p) for p in platforms}
    chosen = [c for c in children if c.platform is not None and _norm(c.platform) in wanted]
    missing = wanted - {_norm(c.platform) for c in chosen if c.platform is not None}
    if missing:
        available = [str(c.platform) for c in children if c.platform is not None and _is_image(c)]
        raise NotFound(
            f"{where}: no image for platform {', '.join(sorted(missing))}",
            hint="available: " + (", ".join(available) or "none"),
        )
    return chosen


def copy(
    src: ImageStore,
    dst: ImageStore,
    platforms: Sequence[Platform] = (),
    tag: str | None = None,
    progress: Progress | None = None,
    jobs: int = 4,
) -> CopyResult:
    """Copy the image `src` resolves to into `dst` under `tag` (None: `dst`'s own reference).

    With `platforms`, an index is narrowed to those platforms: one platform copies that
    manifest alone, several give a new index of them. A store that holds one image per name
    (docker-archive, docker-daemon) takes an index only when it holds one platform."""
    root = src.resolve()
    extra: dict[str, bytes] = {}  # documents made here (a narrowed index)

    def fetch(desc: Descriptor) -> tuple[bytes, str, dict[str, Any]]:
        if desc.digest in extra:
            data, media_type = extra[desc.digest], desc.media_type
        else:
            data, media_type = src.read_manifest(desc)
        return data, media_type, parse_json_object(data, f"{src.where}: manifest {desc.digest}")

    _, _, body = fetch(root)
    if is_index(root.media_type, body):
        children = [Descriptor.from_json(d) for d in body.get("manifests", [])]
        if platforms:
            chosen = _choose(children, platforms, src.where)
            if len(chosen) == 1:
                root = chosen[0]
            else:
                data = Index(tuple(chosen)).to_bytes()
                root = Descriptor(OCI_INDEX, sha256_digest(data), len(data))
                extra[root.digest] = data
        elif dst.single_image:
            images = [c for c in children if _is_image(c)]
            if len(images) != 1:
                raise DockerifyError(
                    f"{dst.where}: a Docker image holds one platform, but {src.where} has {len(images)}",
                    hint="choose one with --platform, or copy all of them to oci:DIR or oci-archive:FILE",
                )
            root = images[0]

    graph = walk(root, fetch, skip=(lambda d: not _is_image(d)) if dst.single_image else None)
    todo = [b for b in graph.blobs.values() if not dst.has_blob(b)]
    progress = progress or Progress(quiet=True)
    with (
        tempfile.TemporaryDirectory(prefix="dockerify-copy-") as tmp,
        progress.task(f"copying to {dst.where}", total=sum(b.size for b in todo)) as advance,
    ):
        lock = threading.Lock()

        def one(blob: Descriptor) -> None:
            path = Path(tmp) / blob.hex
            src.fetch_blob(blob, path)
            dst.write_blob(blob, path)
            path.unlink()
            with lock:
                advance(blob.size)

        if todo:
            # Largest first, a few at a time: registries and the network are the slow part.
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(todo)))) as pool:
                futures = [pool.submit(one, b) for b in sorted(todo, key=lambda b: -b.size)]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    copied, skipped = len(todo), len(graph.blobs) - len(todo)
    moved = sum(b.size for b in todo)
    for desc, data in graph.manifests:
        dst.write_manifest(desc, data)
    top = graph.root
    if (
        top.platform is None
        and graph.images
        and len(graph.images) == 1
        and top.digest == graph.images[0][0].digest
    ):
        top = _with_config_platform(src, top, graph.images[0][1])
    dst.write_tag(top, tag)
    return CopyResult(top, tuple(d for d, _ in graph.images), copied, skipped, moved)


def _with_config_platform(src: ImageStore, desc: Descriptor, manifest: dict[str, Any]) -> Descriptor:
    """A single manifest's descriptor names the platform its config gives (as builds tag it)."""
    try:
        cfg = Descriptor.from_json(manifest["config"])
        config = ImageConfig.parse(src.read_blob(cfg), f"{src.where}: config {cfg.digest}")
    except (DockerifyError, KeyError, TypeError, ValueError):
        return desc
    if not config.platform.architecture:
        return desc
    return Descriptor(desc.media_type, desc.digest, desc.size, config.platform, dict(desc.annotations))
