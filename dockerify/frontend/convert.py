"""What the frontend image does inside BuildKit's exec ops: unpack a disk image or tarball from
the build context into a tree (`convert`), and write an export stage's tree as an SD card,
initramfs or stage0 bundle (`export`).

Both run as root in the build container, on the build platform, without network, privileges or
emulation. Failures are not exec failures: the error is written as `error.json` into the facts
output and the exec succeeds, so the frontend can report it with the build file's line (an exec
failure would reach the user as a bare "exit code: 1").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from dockerify.build import detect_platform, fixups, tree_labels
from dockerify.cli.export import export_options
from dockerify.errors import DockerifyError
from dockerify.exporters.common import Warnings
from dockerify.exporters.export import export as export_image
from dockerify.exporters.rootfs import _DirWriter
from dockerify.fixups import restore_preload
from dockerify.observe import TreeFacts
from dockerify.oci.model import OCI_MANIFEST, Descriptor
from dockerify.oci.select import Image
from dockerify.platform import Platform
from dockerify.sources import open_source
from dockerify.sources.directory import directory_entries

log = logging.getLogger("dockerify")

FACTS = "facts.json"
ERROR = "error.json"


def _write_json(directory: str, name: str, value: dict[str, Any]) -> None:
    Path(directory, name).write_text(json.dumps(value, sort_keys=True, indent=1) + "\n")


def _fail(meta: str, err: DockerifyError) -> int:
    _write_json(meta, ERROR, {"error": err.message, "hint": err.hint or ""})
    print(f"dockerify: {err.message}", file=sys.stderr)
    return 0


# The one xattr BuildKit's layer differ (containerd's and moby's tar writers) carries over.
KEPT_BY_BUILDKIT = "security.capability"


LAYER_LOSS = (
    "xattrs that BuildKit's layer export drops (it keeps only security.capability; "
    "`dockerify build` and an EXPORT stage keep them all)"
)


def convert(source_path: str, display: str, out: str, meta: str, requested: str | None) -> int:
    try:
        want = Platform.parse(requested) if requested else None
        with open_source(source_path) as source:
            # Messages name the file as the user wrote it in the build file, not the mount point.
            source.name = display
            facts = TreeFacts()
            labels: dict[str, str] = {}
            warnings = Warnings(display)
            writer = _DirWriter(Path(out), warnings)
            for entry in fixups(facts.tap(source.entries()), labels):
                if any(k != KEPT_BY_BUILDKIT for k in entry.xattrs):
                    # The converted tree has them; the image layer BuildKit writes will not.
                    warnings.add(LAYER_LOSS, "/" + entry.path.decode(errors="replace"))
                writer.write(entry)
            writer.finish()
            platform = detect_platform(facts, want, False, display)
            labels.update(tree_labels(facts, source))
        for warning in warnings.report():
            print(f"dockerify: warning: {warning}", file=sys.stderr)
        shell = facts.default_shell()
        _write_json(
            meta,
            FACTS,
            {
                "platform": str(platform),
                "labels": labels,
                "default_cmd": [shell] if shell else None,
                "created": facts.newest_mtime,
                "entries": facts.entries,
            },
        )
        print(f"dockerify: {display}: {platform}, {facts.entries} entries", file=sys.stderr)
        return 0
    except DockerifyError as e:
        # Name the file as the build file does, not by its mount point in this container.
        return _fail(meta, DockerifyError(e.message.replace(source_path, display), e.hint))
    except (OSError, ValueError) as e:
        return _fail(meta, DockerifyError(f"{display}: {e}".replace(source_path, display)))


def export(
    rootfs: str, config_path: str, out: str, meta: str, fmt: str, name: str, options: list[str]
) -> int:

    try:
        config_bytes = Path(config_path).read_bytes()
        config = json.loads(config_bytes)
        # The exporters derive ids from the image digest when the layout label lacks them; the
        # config's digest stands in for it here (same config, same ids).
        digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        image = Image(None, Descriptor(OCI_MANIFEST, digest, len(config_bytes)), {}, config)  # type: ignore[arg-type]
        labels = image.labels
        entries = (restore_preload(e, labels) for e in directory_entries(rootfs))
        result = export_image(image, export_options(fmt, os.path.join(out, name), options), entries).to_json()
        for warning in result.get("warnings") or []:
            print(f"dockerify: warning: {warning}", file=sys.stderr)
        result["output"] = name
        _write_json(meta, FACTS, result)
        return 0
    except DockerifyError as e:
        return _fail(meta, e)
    except (OSError, ValueError) as e:
        return _fail(meta, DockerifyError(f"{name}: {e}"))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="dockerify: %(message)s", stream=sys.stderr)
    p = argparse.ArgumentParser(prog="python3 -m dockerify.frontend")
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--source", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--meta", required=True)
    c.add_argument("--platform")
    e = sub.add_parser("export")
    e.add_argument("--rootfs", required=True)
    e.add_argument("--config", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--meta", required=True)
    e.add_argument("--format", required=True)
    e.add_argument("--name", required=True)
    e.add_argument("options", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.mode == "convert":
        return convert(args.source, args.name, args.out, args.meta, args.platform)
    opts = [o for o in args.options if o != "--"]
    return export(args.rootfs, args.config, args.out, args.meta, args.format, args.name, opts)
