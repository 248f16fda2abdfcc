"""`dockerify build --chunked`: a metadata pass plans the layers (chunking.py), then the
source is streamed once more into all of them (oci/multilayer.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from dockerify.chunking import Plan, TreeScan, plan_layers
from dockerify.entry import Entry
from dockerify.oci.blobs import BlobStore
from dockerify.oci.model import Descriptor
from dockerify.oci.multilayer import write_layers
from dockerify.sources import Source

log = logging.getLogger("dockerify")


def plan_source(source: Source, max_layers: int) -> Plan:
    # Content is read only for the dpkg database; everything else is metadata.
    return plan_layers(TreeScan.of(source.entries()), max_layers)


def write_chunked(
    source: Source,
    entries: Iterator[Entry],
    store: BlobStore,
    max_layers: int,
    compression: str,
    epoch: int | None,
    progress: Callable[[int], object] | None = None,
) -> list[tuple[Descriptor, str]]:
    """(descriptor with the layer's annotations, diff_id) for each layer, bottom first."""
    plan = plan_source(source, max_layers)
    routed = write_layers(
        entries,
        lambda e: plan.layer_of(e.path),
        store,
        compression=compression,
        epoch=epoch,
        progress=progress,
        where=source.name,
    )
    out = []
    for r in routed:
        d = r.layer.descriptor
        out.append(
            (
                Descriptor(d.media_type, d.digest, d.size, annotations=plan.layers[r.index].annotations()),
                r.layer.diff_id,
            )
        )
    log.info(
        "%s: %d layers by %s",
        source.name,
        len(out),
        "package" if plan.layers[-1].kind != "tree" else "directory",
    )
    return out
