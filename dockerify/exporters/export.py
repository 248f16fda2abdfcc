"""One entry to every exporter: an image (or its tree) and `ExportOptions` in, the format's typed
result out.

`dockerify export`, `undockerify`, the SDK and the BuildKit frontend's EXPORT all call `export()`;
the command line only turns flags into `ExportOptions`. The format is looked up in formats.py and
given its own options, taken by name from `ExportOptions`; an option given for another format is
refused (`check()`), with the formats that take it found from their option classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dockerify.entry import Entry
from dockerify.errors import DockerifyError
from dockerify.exporters import formats
from dockerify.exporters.initramfs import DEFAULT_MEMORY
from dockerify.exporters.sink import EntrySource, Result, Sink, option_names
from dockerify.fixups import restore_tree
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.flatten import flatten
from dockerify.oci.select import Image

# Every format's: where, and how much a layer may inflate to while the image is read.
COMMON = ("format", "output", "max_size")


@dataclass(frozen=True)
class ExportOptions:
    """What to write and how: the flags of `dockerify export` (and the SDK's keywords), every
    format's together. Each format takes the fields its options class names; `check()` refuses
    one given for another format rather than ignoring it."""

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

    def check(self) -> Sink[Any, Any]:
        """The format's sink, once no option is given that the format does not take."""
        sink = formats.find(self.format)
        taken = option_names(sink)
        given = [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in COMMON and f.name not in taken and getattr(self, f.name) != _default(f)
        ]
        # --compress last: any other misplaced option is the likelier mistake
        for option in sorted(given, key=lambda name: name == "compress"):
            if option == "compress" and sink.directory:
                raise DockerifyError(f"--compress does not apply to --format {self.format} (a directory)")
            takers = [s.name for s in formats.SINKS if option in option_names(s)]
            flag = "--" + option.replace("_", "-")
            raise DockerifyError(f"{flag} applies to --format {' or '.join(takers)}, not {self.format}")
        return sink

    def for_format(self, sink: Sink[Any, Any]) -> Any:
        """The format's own options, its fields taken from these by name."""
        return sink.options(**{name: getattr(self, name) for name in option_names(sink)})

    def replace(self, **changes: Any) -> ExportOptions:
        return dataclasses.replace(self, **changes)


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def export(image: Image, options: ExportOptions, entries: Iterable[Entry] | None = None) -> Result:
    """Write `image` (or `entries`, its tree from elsewhere: the frontend's stage rootfs) as
    `options.format` at `options.output`; returns the format's result (`to_json()` is what
    `--json` prints)."""
    sink = options.check()
    source: EntrySource
    if entries is None:
        # Re-readable when the tree is the image's: the SD card reads it twice (sizes, then the
        # root filesystem written directly); a tree given from elsewhere is read once.
        source = lambda: restore_tree(flatten(image, max_size=options.max_size), image.labels)  # noqa: E731
    else:
        source = entries
    result: Result = sink.write(image, source, options.output, options.for_format(sink))
    return result
