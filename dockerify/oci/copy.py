"""Copy an image or a whole index between any two stores (oci/store.py's ImageStore).

Manifest documents travel as the exact bytes the source holds, so digests do not change where
both stores keep manifests; blobs go children first, then manifests children first, then the
root under the tag, so a reader of the destination never sees a manifest whose parts are
missing."""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dockerify.errors import DockerifyError, NotFound
from dockerify.jsonable import Result
from dockerify.oci.graph import walk
from dockerify.oci.mediatype import is_index
from dockerify.oci.model import OCI_INDEX, Descriptor, ImageConfig, Index, parse_json_object, sha256_digest
from dockerify.oci.store import ImageStore
from dockerify.platform import Platform
from dockerify.progress import Progress

log = logging.getLogger("dockerify")


@dataclass(frozen=True)
class CopyResult(Result):
    root: Descriptor
    manifests: tuple[Descriptor, ...]
    blobs_copied: int
    blobs_skipped: int  # the destination had them, or mounted them
    bytes_copied: int
    bytes_skipped: int = 0
    blobs_mounted: int = 0

    def to_json(self) -> dict[str, Any]:
        """What `dockerify copy --json` prints."""
        return {
            "digest": self.root.digest,
            "mediaType": self.root.media_type,
            "manifests": [d.digest for d in self.manifests],
            "blobs_copied": self.blobs_copied,
            "blobs_skipped": self.blobs_skipped,
            "bytes_copied": self.bytes_copied,
        }


class Counter(Protocol):
    """What a caller counts a transfer with (registry/transfer.py's TransferStats)."""

    def moved(self, size: int) -> None: ...

    def skipped(self, size: int, mounted: bool = False) -> None: ...


class _Tally:
    def __init__(self, also: Counter | None) -> None:
        self.also = also
        self.lock = threading.Lock()
        self.copied = self.skipped_blobs = self.mounted = self.bytes_copied = self.bytes_skipped = 0

    def moved(self, size: int) -> None:
        with self.lock:
            self.copied += 1
            self.bytes_copied += size
        if self.also is not None:
            self.also.moved(size)

    def skipped(self, size: int, mounted: bool = False) -> None:
        with self.lock:
            self.skipped_blobs += 1
            self.bytes_skipped += size
            self.mounted += mounted
        if self.also is not None:
            self.also.skipped(size, mounted)


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
    *,
    root: Descriptor | None = None,
    mount_from: Sequence[str] = (),
    stats: Counter | None = None,
    label: str | None = None,
    scratch: str | Path | None = None,
    config_platform: bool = True,
) -> CopyResult:
    """Copy the image `src` resolves to (or `root`, a manifest or index it holds) into `dst`
    under `tag` (None: `dst`'s own reference).

    With `platforms`, an index is narrowed to those platforms: one platform copies that
    manifest alone, several give a new index of them. A store that holds one image per name
    (docker-archive, docker-daemon) takes an index only when it holds one platform. Blobs `dst`
    has are skipped; with `mount_from`, blobs those repositories of a registry `dst` hold are
    mounted instead of sent. `stats` is told of every blob as well as the result. Blobs fetched
    from `src` are spooled in `scratch` (best on `dst`'s filesystem; default: the system's
    temporary directory). Without `config_platform`, a single manifest's descriptor is left as
    it is (the caller reads the platform from the copied config itself)."""
    root = root if root is not None else src.resolve()
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
    tally = _Tally(stats)
    blobs = list(graph.blobs.values())
    progress = progress or Progress(quiet=True)
    with (
        tempfile.TemporaryDirectory(prefix=".dockerify-copy-", dir=scratch) as tmp,
        progress.task(label or f"copying to {dst.where}", total=sum(b.size for b in blobs)) as advance,
    ):
        lock = threading.Lock()

        def tell(n: int) -> None:
            with lock:
                advance(n)

        def one(blob: Descriptor) -> None:
            # Asked here, in the pool: a registry's HEAD per blob is a round trip each.
            if dst.has_blob(blob):
                log.debug("%s: blob %s exists; not uploading", dst.where, blob.digest)
                tally.skipped(blob.size)
                tell(blob.size)
                return
            if mount_from and dst.mount_blob(blob, mount_from):
                tally.skipped(blob.size, mounted=True)
                tell(blob.size)
                return
            # A store with the blob on disk (a layout) is read in place, not copied first.
            path = src.blob_path(blob)
            fetched = path is None
            if path is None:
                path = Path(tmp) / blob.hex
                src.fetch_blob(blob, path, tell)
            try:
                sent = dst.write_blob(blob, path, None if fetched else tell, take=fetched)
            finally:
                if fetched:
                    path.unlink(missing_ok=True)
            if sent:
                tally.moved(blob.size)
            else:
                tally.skipped(blob.size)

        if blobs:
            # Largest first, a few at a time: registries and the network are the slow part.
            with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(blobs)))) as pool:
                futures = [pool.submit(one, b) for b in sorted(blobs, key=lambda b: -b.size)]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    top = graph.root
    top_data = b""
    for desc, data in graph.manifests:
        if desc.digest == top.digest:
            top_data = data  # written with its tag below: one request to a registry
        else:
            dst.write_manifest(desc, data)
    if (
        config_platform
        and top.platform is None
        and graph.images
        and len(graph.images) == 1
        and top.digest == graph.images[0][0].digest
    ):
        top = _with_config_platform(src, top, graph.images[0][1])
    dst.write_tag(top, tag, top_data)
    return CopyResult(
        top,
        tuple(d for d, _ in graph.images),
        tally.copied,
        tally.skipped_blobs,
        tally.bytes_copied,
        tally.bytes_skipped,
        tally.mounted,
    )


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
