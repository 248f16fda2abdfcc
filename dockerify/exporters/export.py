"""One entry to every exporter: an image (or its tree) and typed `ExportOptions` in, a summary out.

`dockerify export`, `undockerify` and the BuildKit frontend's EXPORT all call `export()`; the
command line only turns flags into `ExportOptions`."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dockerify.entry import Entry
from dockerify.errors import DockerifyError
from dockerify.exporters.common import compression_for
from dockerify.exporters.initramfs import DEFAULT_MEMORY, InitramfsOptions, write_initramfs
from dockerify.exporters.rootfs import write_rootfs_dir, write_rootfs_tar
from dockerify.exporters.sdcard import CardOptions, EntrySource, write_sdcard
from dockerify.exporters.stage0 import Stage0Options, write_stage0
from dockerify.fixups import restore_tree
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.flatten import flatten
from dockerify.oci.select import Image

FORMATS = ("rootfs-tar", "rootfs-dir", "sdcard", "initramfs", "stage0")


@dataclass(frozen=True)
class ExportOptions:
    """What to write and how. Fields after `compress` only mean something for some formats
    (`ONLY_FOR`); `check()` refuses one given for another format rather than ignoring it."""

    format: str
    output: str
    compress: str | None = None  # None: by the output name's suffix (initramfs: gzip)
    max_size: int = DEFAULT_MAX_SIZE  # inflated bytes a layer may reach (any format)
    # sdcard
    disk_id: str | None = None
    boot_id: str | None = None
    root_uuid: str | None = None
    boot_label: str | None = None
    root_label: str | None = None
    boot_size: int | None = None
    root_size: int | None = None
    shrink: bool = False
    # initramfs and stage0
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    memory: int = DEFAULT_MEMORY
    init: str | None = None
    hostname: str | None = None
    # stage0
    kernel: str | None = None
    stage0: str | None = None
    append: str | None = None
    accel: str | None = None

    def check(self) -> None:
        if self.format not in FORMATS:
            raise DockerifyError(f"unknown format {self.format!r}", hint="one of " + ", ".join(FORMATS))
        defaults = ExportOptions(self.format, self.output)
        for option, formats in ONLY_FOR.items():
            if getattr(self, option) == getattr(defaults, option) or self.format in formats:
                continue
            flag = "--" + option.replace("_", "-")
            raise DockerifyError(f"{flag} applies to --format {' or '.join(formats)}, not {self.format}")
        if self.compress and self.format in ("rootfs-dir", "stage0"):
            raise DockerifyError(f"--compress does not apply to --format {self.format} (a directory)")

    def replace(self, **changes: Any) -> ExportOptions:
        return dataclasses.replace(self, **changes)


# Options that only mean something for some formats.
ONLY_FOR = {
    "disk_id": ("sdcard",),
    "boot_id": ("sdcard",),
    "root_uuid": ("sdcard",),
    "boot_label": ("sdcard",),
    "root_label": ("sdcard",),
    "boot_size": ("sdcard",),
    "root_size": ("sdcard",),
    "shrink": ("sdcard",),
    "entrypoint": ("initramfs", "stage0"),
    "cmd": ("initramfs", "stage0"),
    "env": ("initramfs", "stage0"),
    "init": ("initramfs", "stage0"),
    "hostname": ("initramfs", "stage0"),
    "kernel": ("stage0",),
    "stage0": ("stage0",),
    "append": ("stage0",),
    "accel": ("stage0",),
}


def export(image: Image, options: ExportOptions, entries: Iterable[Entry] | None = None) -> dict[str, Any]:
    """Write `image` (or `entries`, its tree from elsewhere: the frontend's stage rootfs) as
    `options.format` at `options.output`; returns the summary `--json` prints."""
    options.check()
    fmt = options.format
    if fmt == "sdcard":
        return _sdcard(image, options, entries)
    if entries is None:
        entries = restore_tree(flatten(image, max_size=options.max_size), image.labels)
    if fmt == "rootfs-tar":
        r = write_rootfs_tar(entries, options.output, options.compress)
        return {
            "output": r.path,
            "format": fmt,
            "entries": r.entries,
            "tar_size": r.tar_size,
            "warnings": r.warnings,
        }
    if fmt == "rootfs-dir":
        d = write_rootfs_dir(entries, options.output)
        return {"output": d.path, "format": fmt, "entries": d.entries, "warnings": d.warnings}
    if fmt == "initramfs":
        i = write_initramfs(image, entries, options.output, initramfs_options(options))
        return {
            "output": i.path,
            "format": fmt,
            "compression": i.compression,
            "size": i.size,
            "unpacked": i.unpacked,
            "entries": i.entries,
            "init": i.init_path,
            "image_init": i.image_init,
            "argv": i.argv,
            "warnings": i.warnings,
        }
    b = write_stage0(
        image,
        entries,
        options.output,
        Stage0Options(
            initramfs=initramfs_options(options),
            kernel=options.kernel,
            stage0=options.stage0,
            append=options.append or "",
            accel=options.accel or "auto",
        ),
    )
    return {"output": b.path, "format": fmt, **b.summary()}


def _sdcard(image: Image, options: ExportOptions, entries: Iterable[Entry] | None) -> dict[str, Any]:
    # Re-readable when the tree is the image's: the card reads it twice (sizes, then the root
    # filesystem written directly); a tree given from elsewhere is staged instead.
    source: EntrySource
    if entries is None:
        source = lambda: restore_tree(flatten(image, max_size=options.max_size), image.labels)  # noqa: E731
    else:
        source = entries
    c = write_sdcard(
        image,
        source,
        options.output,
        CardOptions(
            disk_id=options.disk_id,
            boot_id=options.boot_id,
            root_uuid=options.root_uuid,
            boot_label=options.boot_label,
            root_label=options.root_label,
            boot_size=options.boot_size,
            root_size=options.root_size,
            shrink=options.shrink,
            compression=options.compress,
        ),
    )
    return {"output": c.path, "format": options.format, **c.summary()}


def initramfs_options(options: ExportOptions) -> InitramfsOptions:
    compression = options.compress
    if compression is None:
        initramfs = options.format == "initramfs"
        compression = compression_for(options.output, None) if initramfs else "gzip"
        if initramfs and compression == "none" and not options.output.endswith(".cpio"):
            compression = "gzip"  # the usual initramfs: gzip unless the name says otherwise
    return InitramfsOptions(
        compression=compression,
        memory=options.memory,
        entrypoint=options.entrypoint,
        cmd=options.cmd,
        env=options.env,
        init=options.init,
        hostname=options.hostname,
    )
