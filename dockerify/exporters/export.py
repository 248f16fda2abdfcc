"""One entry to every exporter: an image (or its tree) and `ExportOptions` in, the format's typed
result out.

`dockerify export`, `undockerify`, the SDK and the BuildKit frontend's EXPORT all call `export()`;
the command line only turns flags into options by name (`ExportOptions.of`). The format is looked
up in formats.py; its options are its own class, and an option given for another format is
refused with the formats that take it, found from their option classes (no table to keep)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dockerify.entry import Entry
from dockerify.errors import DockerifyError
from dockerify.exporters import formats
from dockerify.exporters.sink import EntrySource, Result, Sink, option_names
from dockerify.fixups import restore_tree
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.flatten import flatten
from dockerify.oci.select import Image

# Every format's: which format, where, and how much a layer may inflate to while it is read.
COMMON = ("format", "output", "max_size")


@dataclass(frozen=True)
class ExportOptions:
    """What to write, where, and how: `options` is the format's own options class (CardOptions
    for sdcard, InitramfsFormatOptions, ...; None: its defaults). `ExportOptions.of()` builds it
    from the flags of `dockerify export` (the SDK's keywords) by name, refusing one that belongs
    to another format rather than ignoring it."""

    format: str
    output: str
    max_size: int = DEFAULT_MAX_SIZE  # inflated bytes a layer may reach (any format)
    options: object | None = None

    @classmethod
    def of(cls, format: str, output: str, max_size: int = DEFAULT_MAX_SIZE, **given: Any) -> ExportOptions:
        return cls(format, output, max_size, format_options(formats.find(format), given))

    def check(self) -> Sink[Any, Any]:
        """The format's sink, once the options are that format's."""
        sink = formats.find(self.format)
        if self.options is not None and not isinstance(self.options, sink.options):
            raise DockerifyError(
                f"--format {self.format} takes {sink.options.__name__}, not {type(self.options).__name__}"
            )
        return sink

    def for_format(self, sink: Sink[Any, Any]) -> Any:
        return sink.options() if self.options is None else self.options

    def replace(self, **changes: Any) -> ExportOptions:
        return dataclasses.replace(self, **changes)


def format_options(sink: Sink[Any, Any], given: Mapping[str, Any]) -> Any:
    """The options of `sink` from `given`, by name (a list is read as a tuple). A name another
    format takes is refused when given (a value other than its default: the command line passes
    every flag), a name no format takes always."""
    defaults = formats.option_defaults()
    for name in given:
        if name not in defaults:
            raise DockerifyError(f"unknown option {name!r}", hint="one of " + ", ".join(sorted(defaults)))
    values = {name: tuple(v) if isinstance(v, list) else v for name, v in given.items()}
    taken = option_names(sink)
    misplaced = [name for name, v in values.items() if name not in taken and v != defaults[name]]
    # --compress last: any other misplaced option is the likelier mistake
    for name in sorted(misplaced, key=lambda n: n == "compress"):
        if name == "compress" and sink.directory:
            raise DockerifyError(f"--compress does not apply to --format {sink.name} (a directory)")
        takers = [s.name for s in formats.SINKS if name in option_names(s)]
        flag = "--" + name.replace("_", "-")
        raise DockerifyError(f"{flag} applies to --format {' or '.join(takers)}, not {sink.name}")
    return sink.options(**{name: v for name, v in values.items() if name in taken})


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
