"""The export formats: the one place a format is registered (its sink is its own module)."""

from __future__ import annotations

from typing import Any

from dockerify.errors import DockerifyError
from dockerify.exporters.initramfs import Initramfs
from dockerify.exporters.rootfs import RootfsDir, RootfsTar
from dockerify.exporters.sdcard import SdCard
from dockerify.exporters.sink import Sink, option_defaults_of
from dockerify.exporters.stage0 import Stage0

SINKS: tuple[Sink[Any, Any], ...] = (RootfsTar(), RootfsDir(), SdCard(), Initramfs(), Stage0())


def names() -> tuple[str, ...]:
    return tuple(s.name for s in SINKS)


def find(name: str) -> Sink[Any, Any]:
    for sink in SINKS:
        if sink.name == name:
            return sink
    raise DockerifyError(f"unknown format {name!r}", hint="one of " + ", ".join(names()))


def option_defaults() -> dict[str, Any]:
    """Every format's option names (the flags of `dockerify export`), with their defaults."""
    out: dict[str, Any] = {}
    for sink in SINKS:
        out.update(option_defaults_of(sink))
    return out
