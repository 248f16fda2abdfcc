"""The contract every export format keeps: an entry stream in, the format's own typed options, a
typed result out.

A format is one module holding a `Sink`: its `name` (the `--format` value), its `options` class
(a frozen dataclass, every field with a default; its field names are the SDK's keywords and the
command line's flags, and a name several formats take means the same in each, with the same
default) and a `write()` returning a frozen result whose `to_json()` is what `dockerify export
--json` prints. Registering it in formats.py is the only other change a new format needs (and
the flags of options no format had before, in dockerify/cli/export.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from dockerify import jsonable
from dockerify.entry import Entry
from dockerify.oci.select import Image

#: The entries of the tree: an iterable read once, or a function giving them anew on each call
#: (the SD card's fast path reads them twice: sizes first, then the root filesystem from them).
EntrySource = Iterable[Entry] | Callable[[], Iterable[Entry]]


def read_once(entries: EntrySource) -> Iterable[Entry]:
    """The entries for a format that reads them once."""
    return entries() if callable(entries) else entries


class Result(jsonable.Result):
    """What a format wrote (a frozen dataclass with a `path` field): `to_json()` is the summary
    `--json` prints (plain JSON values), as every command's result."""

    path: str

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


Opts = TypeVar("Opts")
R_co = TypeVar("R_co", bound=Result, covariant=True)


class Sink(Protocol[Opts, R_co]):
    name: str  # the --format value
    options: type[Opts]  # a frozen dataclass: the ExportOptions fields this format takes
    directory: bool  # the output is a directory (nothing to compress)

    def write(self, image: Image, entries: EntrySource, output: str, options: Opts) -> R_co: ...


def option_names(sink: Sink[Any, Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(sink.options))


def option_defaults_of(sink: Sink[Any, Any]) -> dict[str, Any]:
    return {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(sink.options)
    }
