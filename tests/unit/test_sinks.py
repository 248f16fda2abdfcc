"""The exporters' one sink contract: every registered format keeps it, and a new format is one
module (its sink) plus its line in the registry, with nothing else to edit."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

import dockerify
from dockerify.cli import export as cli_export
from dockerify.errors import DockerifyError
from dockerify.exporters import formats
from dockerify.exporters.common import atomic_file, compression_for
from dockerify.exporters.export import COMMON, ExportOptions, export, format_options
from dockerify.exporters.rootfs import DirResult, RootfsDirOptions, RootfsTarOptions, TarResult
from dockerify.exporters.sdcard import CardOptions
from dockerify.exporters.sink import EntrySource, Result, Sink, option_defaults_of, option_names, read_once
from dockerify.exporters.stage0 import Stage0FormatOptions
from dockerify.frontend import convert
from dockerify.oci.select import Image
from dockerify.platform import Platform
from dockerify.trees import open_image

SINKS = formats.SINKS
# What each format's result, as `--json` prints it, holds (the keys the export tests read).
JSON_KEYS = {
    "rootfs-tar": {"output", "format", "entries", "tar_size", "warnings"},
    "rootfs-dir": {"output", "format", "entries", "warnings"},
}


def _result_type(sink: Sink[Any, Any]) -> type:
    hints = typing.get_type_hints(type(sink).write)
    return typing.cast(type, hints["return"])


def test_the_registry_holds_the_five_formats_once_each() -> None:
    assert formats.names() == ("rootfs-tar", "rootfs-dir", "sdcard", "initramfs", "stage0")
    assert len(set(formats.names())) == len(SINKS)


@pytest.mark.parametrize("sink", SINKS, ids=lambda s: s.name)
def test_every_sink_keeps_the_contract(sink: Sink[Any, Any]) -> None:
    assert isinstance(sink.name, str) and isinstance(sink.directory, bool)
    assert dataclasses.is_dataclass(sink.options) and sink.options.__dataclass_params__.frozen  # type: ignore[attr-defined]
    sink.options()  # every option has a default: a format given nothing writes its default
    assert not set(option_names(sink)) & set(COMMON)
    assert ("compress" not in option_names(sink)) or not sink.directory
    result = _result_type(sink)
    assert dataclasses.is_dataclass(result) and result.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert callable(getattr(result, "to_json", None)) and result.FORMAT == sink.name  # type: ignore[attr-defined]
    assert "path" in {f.name for f in dataclasses.fields(result)}


def test_an_option_several_formats_take_means_the_same_in_each() -> None:
    seen: dict[str, tuple[Any, Any]] = {}
    for sink in SINKS:
        hints = typing.get_type_hints(sink.options)
        for name, default in option_defaults_of(sink).items():
            assert seen.setdefault(name, (hints[name], default)) == (hints[name], default), (sink.name, name)


def test_every_option_is_a_flag_of_dockerify_export() -> None:
    parser = argparse.ArgumentParser()
    cli_export._export_parser(parser)
    dests = {a.dest for a in parser._actions}
    assert set(formats.option_defaults()) <= dests


def test_an_option_of_another_format_is_refused_by_the_formats_own_options(tmp_path: Path) -> None:
    out = str(tmp_path / "x")
    with pytest.raises(DockerifyError, match=r"^--shrink applies to --format sdcard, not rootfs-tar$"):
        ExportOptions.of("rootfs-tar", out, shrink=True)
    with pytest.raises(
        DockerifyError, match=r"^--hostname applies to --format initramfs or stage0, not sdcard$"
    ):
        ExportOptions.of("sdcard", out, hostname="pi")
    with pytest.raises(DockerifyError, match=r"^--kernel applies to --format stage0, not initramfs$"):
        ExportOptions.of("initramfs", out, kernel="vmlinuz")
    with pytest.raises(
        DockerifyError, match=r"^--compress does not apply to --format stage0 \(a directory\)$"
    ):
        ExportOptions.of("stage0", out, compress="xz")
    with pytest.raises(DockerifyError, match=r"^unknown format 'pem'$"):
        ExportOptions.of("pem", out)
    with pytest.raises(DockerifyError, match=r"^unknown option 'bogus'$"):
        ExportOptions.of("sdcard", out, bogus=1)
    # Defaults of another format's options are no option given (the command line passes them all).
    opts = ExportOptions.of("stage0", out, hostname="pi", kernel="k", shrink=False, env=[], compress=None)
    assert opts.options == Stage0FormatOptions(hostname="pi", kernel="k")
    assert opts.check().name == "stage0"
    # The typed form: the format's own options class, and no other.
    assert ExportOptions("sdcard", out, options=CardOptions(shrink=True)).check().name == "sdcard"
    with pytest.raises(DockerifyError, match=r"^--format sdcard takes CardOptions, not RootfsTarOptions$"):
        ExportOptions("sdcard", out, options=RootfsTarOptions()).check()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- a new format, in one module


@dataclass(frozen=True)
class ListingOptions:
    compress: str | None = None  # an option other formats take too
    numbered: bool = False  # one no format had before


@dataclass(frozen=True)
class ListingResult:
    FORMAT: ClassVar[str] = "listing"
    path: str
    lines: int

    def to_json(self) -> dict[str, Any]:
        return {"output": self.path, "format": self.FORMAT, "lines": self.lines}


class Listing:
    """A file naming each entry of the tree, one a line: what a format module holds."""

    name = ListingResult.FORMAT
    options = ListingOptions
    directory = False

    def write(
        self, image: Image, entries: EntrySource, output: str, options: ListingOptions
    ) -> ListingResult:
        lines = [f"{e.type.name.lower()} /{e.path.decode()}\n" for e in read_once(entries)]
        if options.numbered:
            lines = [f"{n} {line}" for n, line in enumerate(lines, 1)]
        data = "".join(lines).encode()
        with atomic_file(output) as tmp:
            tmp.write_bytes(
                gzip.compress(data, mtime=0) if compression_for(output, options.compress) == "gzip" else data
            )
        return ListingResult(output, len(lines))


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[str]:
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("listing\n")
    ref = f"oci:{tmp_path / 'layout'}:v1"
    dockerify.build(str(tree), output=ref, platform="linux/amd64")
    yield ref


def test_a_new_format_is_one_module_and_its_registry_line(
    tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing: Sink[ListingOptions, ListingResult] = Listing()
    monkeypatch.setattr(formats, "SINKS", (*formats.SINKS, listing))
    out = tmp_path / "tree.txt.gz"
    with open_image(layout, Platform.parse("linux/amd64")) as image:
        result: Result = export(image, ExportOptions.of("listing", str(out)))
    assert isinstance(result, ListingResult)
    text = gzip.decompress(out.read_bytes()).decode()
    assert text == "dir /.\ndir /etc\nreg /etc/hostname\n"
    assert result.to_json() == {"output": str(out), "format": "listing", "lines": text.count("\n")}
    # Its options are refused for the others and the others' for it, with no table to edit.
    with pytest.raises(DockerifyError, match="^--shrink applies to --format sdcard, not listing$"):
        ExportOptions.of("listing", str(out), shrink=True)
    with pytest.raises(DockerifyError, match="^--numbered applies to --format listing, not rootfs-tar$"):
        ExportOptions.of("rootfs-tar", str(out), numbered=True)
    with pytest.raises(
        DockerifyError,
        match="^--compress applies to --format rootfs-tar or sdcard or initramfs or listing, not x$",
    ):
        format_options(NoCompress(), {"compress": "xz"})
    # The SDK takes it and its new option as keywords, as it takes every format's.
    plain = tmp_path / "tree.txt"
    sdk = dockerify.export(layout, "listing", plain, compress="none", numbered=True)
    assert sdk.result == ListingResult(str(plain), 3)
    assert sdk.output == str(plain) and dict(sdk.info) == sdk.result.to_json()
    assert plain.read_text() == "1 dir /.\n2 dir /etc\n3 reg /etc/hostname\n"


class NoCompress(Listing):
    name = "x"
    options = RootfsDirOptions  # type: ignore[assignment]


def test_each_format_result_prints_what_export_json_printed(tmp_path: Path, layout: str) -> None:
    """rootfs-tar and rootfs-dir through the SDK: the typed result and its JSON (the other
    formats' JSON is checked by the integration tests of each)."""
    tar = dockerify.export(layout, "rootfs-tar", tmp_path / "root.tar")
    assert isinstance(tar.result, TarResult)
    assert set(tar.info) == JSON_KEYS["rootfs-tar"]
    assert tar.info["format"] == "rootfs-tar" and tar.info["entries"] == tar.result.entries >= 2
    assert tar.info["tar_size"] == (tmp_path / "root.tar").stat().st_size
    assert tar.info["warnings"] == []
    d = dockerify.export(layout, "rootfs-dir", tmp_path / "root")
    assert isinstance(d.result, DirResult)
    assert set(d.to_json()) == JSON_KEYS["rootfs-dir"]
    assert (tmp_path / "root" / "etc" / "hostname").read_text() == "listing\n"
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.result.entries = 0  # type: ignore[misc]


def test_the_frontends_export_op_writes_the_results_json(tmp_path: Path) -> None:
    """EXPORT's exec op (what the frontend image runs), in this process: its facts are the
    format's `to_json()` with the output named as in the build file; a misplaced flag is its
    error.json, nothing written."""
    (tmp_path / "root" / "etc").mkdir(parents=True)
    (tmp_path / "root" / "etc" / "hostname").write_text("stage\n")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]}}))
    for d in ("out", "meta", "bad"):
        (tmp_path / d).mkdir()
    root, out = str(tmp_path / "root"), str(tmp_path / "out")
    assert convert.export(root, str(config), out, str(tmp_path / "meta"), "rootfs-tar", "root.tar", []) == 0
    facts = json.loads((tmp_path / "meta" / convert.FACTS).read_text())
    size = (tmp_path / "out" / "root.tar").stat().st_size
    assert facts == {
        "output": "root.tar",
        "format": "rootfs-tar",
        "entries": 3,
        "tar_size": size,
        "warnings": [],
    }
    bad = str(tmp_path / "bad")
    assert convert.export(root, str(config), out, bad, "rootfs-tar", "x.tar", ["--shrink"]) == 0
    error = json.loads((tmp_path / "bad" / convert.ERROR).read_text())
    assert error["error"] == "--shrink applies to --format sdcard, not rootfs-tar"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["root.tar"]
