"""`dockerify build`: sources -> one layer each -> image config -> manifest(s) -> output."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from dockerify.chunked import write_chunked
from dockerify.entry import Entry
from dockerify.errors import DockerifyError, NotFound
from dockerify.fixups import PRELOAD_LABEL, neutralise_preload
from dockerify.observe import TreeFacts
from dockerify.oci.image import ImageConfig, ImageOptions, index_json, manifest_json
from dockerify.oci.layer import write_layer
from dockerify.oci.layout import Layout
from dockerify.oci.model import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Descriptor, canonical_json
from dockerify.oci.refs import ImageRef
from dockerify.outputs import check_output, write_output
from dockerify.platform import Platform, reconcile
from dockerify.progress import Progress
from dockerify.sources import DEFAULT_MAX_SIZE, Source, open_source
from dockerify.sources.disklayout import LAYOUT_LABEL
from dockerify.sources.options import ReadOptions

log = logging.getLogger("dockerify")


@dataclass(frozen=True)
class BuildOptions:
    image: ImageOptions = field(default_factory=ImageOptions)
    compression: str = "gzip"
    epoch: int | None = None
    pi_fixups: bool = True
    force: bool = False
    max_size: int = DEFAULT_MAX_SIZE
    read: ReadOptions = ReadOptions()  # journal replay and checksum verification of filesystems
    quiet: bool = False
    # GNU sparse members keep holes, but Docker's layer store (tar-split) cannot reassemble them:
    # `docker save` / `docker push` of such a layer fails verification. Docker outputs go dense.
    sparse: bool = True
    # At most this many layers split by package ownership (dockerify/chunking.py); None: one layer.
    chunked: int | None = None

    @staticmethod
    def epoch_from_env() -> int | None:
        value = os.environ.get("SOURCE_DATE_EPOCH")
        if not value:
            return None
        try:
            return int(value)
        except ValueError:
            raise DockerifyError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds") from None


@dataclass(frozen=True)
class BuildResult:
    digest: str  # of the root: the index for several platforms, else the manifest
    manifests: tuple[tuple[str, str], ...]  # (platform, manifest digest)


OS_RELEASE_LABELS = {
    "NAME": "org.opencontainers.image.title",
    "PRETTY_NAME": "org.opencontainers.image.description",
    "VERSION_ID": "org.opencontainers.image.version",
    "HOME_URL": "org.opencontainers.image.url",
    "ID": "org.opencontainers.image.vendor",
}


def fixups(entries: Iterator[Entry], labels: dict[str, str]) -> Iterator[Entry]:
    """The Pi fixups applied to a stream; what they change is recorded in `labels`."""
    for entry in entries:
        fixed = neutralise_preload(entry)
        if fixed is not None:
            entry, labels[PRELOAD_LABEL] = fixed
            log.info("neutralised libarmmem in /etc/ld.so.preload (restored on SD-card export)")
        yield entry


def detect_platform(facts: TreeFacts, requested: Platform | None, force: bool, name: str) -> Platform:
    """The platform of a streamed tree (call after the stream is consumed)."""
    facts.apply_boot_config()
    evidence = facts.detector.evidence()
    return reconcile(evidence.platform, requested, force=force, source=name, why=evidence.why())


def tree_labels(facts: TreeFacts, source: Source) -> dict[str, str]:
    """Labels a tree earns: os-release facts and the disk layout for a later SD-card export."""
    labels = {}
    for key, label in OS_RELEASE_LABELS.items():
        value = facts.os_release().get(key)
        if value:
            labels[label] = value
    if source.layout is not None:
        labels[LAYOUT_LABEL] = canonical_json(source.layout.to_json()).decode()
    return labels


def build_manifest(
    source: Source, requested: Platform | None, layout: Layout, opts: BuildOptions, progress: Progress
) -> Descriptor:
    facts = TreeFacts()
    labels: dict[str, str] = {}
    entries = facts.tap(source.entries())
    if not opts.sparse:
        entries = (e.with_(sparse=None) if e.sparse is not None else e for e in entries)
    if opts.pi_fixups:
        entries = fixups(entries, labels)
    estimate = source.estimate
    with progress.task(f"layer from {source.name}", estimate.total if estimate else None) as bar:
        advance = estimate.counter(bar) if estimate else bar
        if opts.chunked is None:
            layer = write_layer(
                entries,
                layout.blobs,
                compression=opts.compression,
                epoch=opts.epoch,
                progress=advance,
                where=source.name,
            )
            layers = [(layer.descriptor, layer.diff_id)]
        else:
            layers = write_chunked(
                source, entries, layout.blobs, opts.chunked, opts.compression, opts.epoch, advance
            )
    platform = detect_platform(facts, requested, opts.force, source.name)
    labels.update(tree_labels(facts, source))
    shell = facts.default_shell()
    created = opts.epoch if opts.epoch is not None else facts.newest_mtime
    config = ImageConfig(
        platform, [d for _, d in layers], created, opts.image, labels, default_cmd=(shell,) if shell else None
    )
    config_desc = layout.put_json(config.to_json(), OCI_CONFIG)
    manifest = manifest_json(config_desc, [d for d, _ in layers])
    desc = layout.put_json(manifest, OCI_MANIFEST, platform)
    log.info(
        "%s: %s, %d entries, %d layer(s) %s",
        source.name,
        platform,
        facts.entries,
        len(layers),
        layers[0][0].digest,
    )
    return desc


_IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[\w][\w.-]{0,127})?$")
_FILE_SUFFIX = re.compile(r"\.(img|raw|iso|tar|tgz|gz|xz|zst|bz2|lz4|zip)$")


def check_sources(paths: list[str]) -> None:
    """Every source exists, checked before any is read: a missing second source must not cost
    the build of the first."""
    for index, path in enumerate(paths):
        if os.path.lexists(path):
            continue
        if index > 0 and _IMAGE_NAME.match(path) and not _FILE_SUFFIX.search(path):
            # The seed's `dockerify build card.img NAME`.
            raise NotFound(
                f"{path}: no such file (every argument of build is a source)",
                hint=f"to name the image, write: dockerify build {paths[0]} -t {path}",
            )
        raise NotFound(f"{path}: no such file or directory")


def build(
    sources: list[tuple[Platform | None, str]], output: ImageRef, tag: str, opts: BuildOptions
) -> BuildResult:
    """Build one image per source; several sources become one multi-platform index."""
    if not sources:
        raise DockerifyError("nothing to build: name a disk image, tarball or directory")
    check_sources([path for _, path in sources])
    check_output(output)
    progress = Progress(quiet=opts.quiet)

    def produce(layout: Layout) -> Descriptor:
        manifests: list[Descriptor] = []
        for requested, path in sources:
            with open_source(path, max_size=opts.max_size, read=opts.read) as source:
                manifests.append(build_manifest(source, requested, layout, opts, progress))
        platforms = [d.platform for d in manifests]
        if len(set(platforms)) != len(platforms):
            raise DockerifyError(
                "two sources have the same platform: " + ", ".join(map(str, platforms)),
                hint="give each source a distinct PLATFORM=SOURCE",
            )
        if len(manifests) == 1:
            return manifests[0]
        return layout.put_json(index_json(manifests), OCI_INDEX)

    root, manifests = write_output(output, tag, produce, progress, single_layer=opts.chunked is None)
    return BuildResult(root.digest, tuple((str(d.platform), d.digest) for d in manifests))
