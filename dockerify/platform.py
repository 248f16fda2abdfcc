"""Platforms: the OCI os/architecture/variant triple and the architectures behind it.

Detection from a tree's content lives in dockerify.detect (ELF parsing in dockerify.elf)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dockerify.errors import DockerifyError


class Arch(enum.Enum):
    """An architecture as OCI, ELF and QEMU each name it."""

    AMD64 = ("amd64", 62, "x86_64")
    I386 = ("386", 3, "i386")
    ARM64 = ("arm64", 183, "aarch64")
    ARM = ("arm", 40, "arm")
    RISCV64 = ("riscv64", 243, "riscv64")
    PPC64LE = ("ppc64le", 21, "ppc64le")
    S390X = ("s390x", 22, "s390x")

    def __init__(self, oci: str, elf_machine: int, qemu: str) -> None:
        self.oci = oci
        self.elf_machine = elf_machine
        self.qemu = qemu

    @classmethod
    def from_oci(cls, name: str) -> Arch:
        aliases = {"x86_64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm", "i386": "386"}
        name = aliases.get(name, name)
        for arch in cls:
            if arch.oci == name:
                return arch
        raise DockerifyError(
            f"unknown architecture {name!r}", hint="use one of " + ", ".join(a.oci for a in cls)
        )

    @classmethod
    def from_elf(cls, machine: int, elf_class: int) -> Arch | None:
        for arch in cls:
            if arch.elf_machine == machine:
                return arch
        return None

    @property
    def uname(self) -> str:
        return {"amd64": "x86_64", "arm64": "aarch64", "arm": "armv7l", "386": "i686"}.get(self.oci, self.oci)


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) == 1:
            parts = ["linux", *parts]
        if len(parts) not in (2, 3) or not all(parts):
            raise DockerifyError(
                f"invalid platform {text!r}", hint="write it as os/arch[/variant], e.g. linux/arm/v7"
            )
        arch = Arch.from_oci(parts[1])
        variant = parts[2] if len(parts) == 3 else ""
        if arch is Arch.ARM64 and variant == "v8":
            variant = ""  # linux/arm64/v8 is the same platform as linux/arm64
        if arch is Arch.ARM and not variant:
            variant = "v7"
        return cls(parts[0], arch.oci, variant)

    @property
    def arch(self) -> Arch:
        return Arch.from_oci(self.architecture)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_oci(self) -> dict[str, str]:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    @classmethod
    def from_oci(cls, d: dict[str, str]) -> Platform:
        return cls(d.get("os", "linux"), d.get("architecture", ""), d.get("variant", ""))


def reconcile(
    detected: Platform | None, requested: Platform | None, *, force: bool, source: str, why: str = ""
) -> Platform:
    """The platform to label the image with. `why` says what decided `detected` (for the error)."""
    if requested is not None:
        if detected is not None and detected != requested and not force:
            raise DockerifyError(
                f"{source}: --platform {requested} contradicts the content, which is {detected}{why}",
                hint="drop --platform, or add --force to label the image as asked",
            )
        return requested
    if detected is None:
        raise DockerifyError(
            f"{source}: cannot tell the platform: no ELF binaries found",
            hint="give it with --platform, e.g. --platform linux/arm64",
        )
    return detected
