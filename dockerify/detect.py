"""The platform of a whole tree, decided from its core userland and the spread of its ELF files.

A tree is as demanding as the files everything else needs to start: the ELF interpreter, libc,
the shell behind /bin/sh, init and busybox. Real trees carry files built for more than that:
Debian armhf (ARMv7) ships libgcrypt tagged ARMv8, whose ARMv8 code is chosen at run time;
Raspberry Pi OS (ARMv6) ships libarmmem-v7l.so and libraries in hwcap directories
(lib/arm-linux-gnueabihf/neon/vfp) that the loader picks only on a CPU that has them; an arm64
tree may hold a few 32-bit files for multiarch. None of those decide; they are reported as the
files that disagree. Only without a core userland does the spread of all files decide.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from dockerify.elf import ARM_VARIANTS, ElfFile, read_elf
from dockerify.platform import Arch, Platform

#: How many disagreeing (and hwcap-dispatched) files the evidence names; the counts are complete.
LISTED = 20

#: (role, the paths that name it), in the order roles decide the architecture.
CORE_ROLES: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("sh", (b"bin/sh", b"usr/bin/sh")),
    ("init", (b"sbin/init", b"usr/sbin/init", b"lib/systemd/systemd", b"usr/lib/systemd/systemd")),
    ("busybox", (b"bin/busybox", b"usr/bin/busybox", b"sbin/busybox", b"usr/sbin/busybox")),
)

#: Directories the glibc loader searches only when the CPU has the capability they are named after.
HWCAP_DIRS = frozenset(
    {
        b"glibc-hwcaps",
        b"neon",
        b"vfp",
        b"vfpv3",
        b"vfpv3-d16",
        b"vfpv4",
        b"edsp",
        b"thumb",
        b"iwmmxt",
        b"crunch",
        b"v5l",
        b"v6l",
        b"v7l",
        b"v8l",
        b"haswell",
        b"xeon_phi",
        b"i686",
        b"sse2",
    }
)
#: Libraries named after the CPU they are for, chosen by ${PLATFORM} in ld.so.preload or by the
#: program at run time: Raspberry Pi OS's libarmmem-v6l.so / -v7l.so / -v8l.so and the like.
_VARIANT_NAME = re.compile(rb"[-_.](?:arm)?v[5-8]l?\.so(?:\.|$)")


def is_dispatched(path: bytes) -> bool:
    """True for a file the loader or its user picks at run time by CPU capability."""
    *dirs, name = path.split(b"/")
    return any(d in HWCAP_DIRS for d in dirs) or bool(_VARIANT_NAME.search(name))


def _compatible(file: ElfFile, decided: Platform) -> bool:
    """Whether `file` runs on `decided`: same architecture and no newer ARM variant."""
    if file.arch.oci != decided.architecture:
        return False
    if file.arch is Arch.ARM and file.variant and decided.variant in ARM_VARIANTS:
        return ARM_VARIANTS.index(file.variant) <= ARM_VARIANTS.index(decided.variant)
    return True


def _show(path: bytes) -> str:
    return "/" + path.decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class CoreFile:
    role: str  # sh | init | busybox | interpreter | libc
    path: bytes  # the file itself, symlinks resolved
    via: bytes  # the name the role is known by (/bin/sh), may equal path
    file: ElfFile

    def to_json(self) -> dict[str, str]:
        return {
            "role": self.role,
            "path": _show(self.path),
            "via": _show(self.via),
            "platform": str(self.file.platform),
        }


@dataclass(frozen=True)
class PlatformEvidence:
    """Why a tree got its platform; `inspect --json` shows it as `platform_evidence`."""

    platform: Platform | None
    decided_by: str  # "core" | "distribution" | "boot-config" | "none"
    core: tuple[CoreFile, ...] = ()
    counts: tuple[tuple[str, int], ...] = ()  # ELF files per platform, most first
    dispatched: tuple[tuple[bytes, ElfFile], ...] = ()  # hwcap-dispatched files (first LISTED)
    dispatched_count: int = 0
    disagree: tuple[tuple[bytes, ElfFile], ...] = ()  # files that would not run on `platform`
    disagree_count: int = 0

    def why(self) -> str:
        """What decided, for messages: " (by its core userland: /bin/sh -> /bin/dash, ...)"."""
        if self.decided_by != "core":
            return f" (by the {self.decided_by})" if self.decided_by != "none" else ""
        shown = [_show(c.via) + (f" -> {_show(c.path)}" if c.via != c.path else "") for c in self.core]
        return " (by its core userland: " + ", ".join(shown) + ")"

    def to_json(self) -> dict[str, Any]:
        def listing(files: tuple[tuple[bytes, ElfFile], ...]) -> list[dict[str, str]]:
            return [{"path": _show(p), "platform": str(f.platform)} for p, f in files]

        return {
            "platform": str(self.platform) if self.platform else None,
            "decided_by": self.decided_by,
            "core": [c.to_json() for c in self.core],
            "elf_files": dict(self.counts),
            "dispatched": {"count": self.dispatched_count, "files": listing(self.dispatched)},
            "disagree": {"count": self.disagree_count, "files": listing(self.disagree)},
        }


@dataclass
class PlatformDetector:
    """Collects evidence while entries stream past; `evidence()` decides."""

    files: dict[bytes, ElfFile] = field(default_factory=dict)
    links: dict[bytes, bytes] = field(default_factory=dict)  # symlinks; hard links as "/target"
    hint: Platform | None = None

    def add_elf(self, path: bytes, head: bytes, tail: bytes, size: int) -> None:
        elf = read_elf(head, tail, size)
        if elf is not None:
            self.files[path] = elf

    def add_symlink(self, path: bytes, target: bytes) -> None:
        self.links[path] = target

    def add_hardlink(self, path: bytes, first: bytes) -> None:
        self.links[path] = b"/" + first

    def add_boot_config(self, config_txt: bytes) -> None:
        """Raspberry Pi config.txt: arm_64bit=1 means a 64-bit kernel, a hint for arm64."""
        for line in config_txt.decode(errors="replace").splitlines():
            key, _, value = line.split("#", 1)[0].strip().partition("=")
            if key.strip() == "arm_64bit" and value.strip() == "1":
                self.hint = Platform("linux", "arm64")

    def result(self) -> Platform | None:
        return self.evidence().platform

    # -- deciding -------------------------------------------------------------------------------

    def resolve(self, path: bytes) -> bytes | None:
        """`path` with every symlink in it followed inside the tree; None for a loop."""
        parts = deque(p for p in path.split(b"/") if p)
        done: list[bytes] = []
        hops = 0
        while parts:
            part = parts.popleft()
            if part == b".":
                continue
            if part == b"..":
                if done:
                    done.pop()
                continue
            here = b"/".join([*done, part])
            target = self.links.get(here)
            if target is None:
                done.append(part)
                continue
            hops += 1
            if hops > 40:
                return None
            if target.startswith(b"/"):
                done = []
            parts.extendleft(reversed([p for p in target.split(b"/") if p]))
        return b"/".join(done)

    def _core_file(self, role: str, via: bytes) -> CoreFile | None:
        path = self.resolve(via)
        file = self.files.get(path) if path is not None else None
        return CoreFile(role, path, via, file) if path is not None and file is not None else None

    def core(self) -> list[CoreFile]:
        found: list[CoreFile] = []
        for role, names in CORE_ROLES:
            for name in names:
                core = self._core_file(role, name)
                if core is not None:
                    found.append(core)
                    break
        arch = (found[0].file.arch, found[0].file.bits) if found else self._majority_arch()
        interp = next((c.file.interp for c in found if c.file.interp), b"")
        if not interp:
            named = Counter(f.interp for f in self.files.values() if f.interp and (f.arch, f.bits) == arch)
            interp = min(named, key=lambda i: (-named[i], i)) if named else b""
        loader = self._core_file("interpreter", interp.lstrip(b"/")) if interp else None
        if loader is not None:
            found.append(loader)
        libc = self._libc(loader, arch)
        if libc is not None and all(c.path != libc.path for c in found):
            found.append(libc)
        return found

    def _libc(self, loader: CoreFile | None, arch: tuple[Arch, int] | None) -> CoreFile | None:
        names = sorted(p for p in (*self.files, *self.links) if p.rsplit(b"/", 1)[-1] == b"libc.so.6")
        candidates = [c for c in (self._core_file("libc", n) for n in names) if c is not None]
        if loader is not None:
            home = loader.path.rsplit(b"/", 1)[0]
            for c in candidates:
                if c.path.rsplit(b"/", 1)[0] == home:
                    return c
        matching = [c for c in candidates if (c.file.arch, c.file.bits) == arch]
        return matching[0] if matching else None

    def _majority_arch(self) -> tuple[Arch, int] | None:
        counts = Counter((f.arch, f.bits) for f in self.files.values())
        if not counts:
            return None
        return min(counts, key=lambda k: (-counts[k], k[0].oci, k[1]))

    def evidence(self) -> PlatformEvidence:
        if not self.files:
            return PlatformEvidence(self.hint, "boot-config" if self.hint else "none")
        core = self.core()
        if core:
            arch, bits = core[0].file.arch, core[0].file.bits
            variants = [c.file.variant for c in core if c.file.arch is arch and c.file.variant]
            decided_by = "core"
        else:
            majority = self._majority_arch()
            assert majority is not None
            arch, bits = majority
            variants = []
            decided_by = "distribution"
        variant = ""
        if arch is Arch.ARM:
            if variants:
                variant = max(variants, key=ARM_VARIANTS.index)
            else:
                # No core userland: the variant most files are built for (the newer on a tie).
                spread = Counter(
                    f.variant
                    for p, f in self.files.items()
                    if f.arch is arch and f.variant and not is_dispatched(p)
                )
                variant = max(spread, key=lambda v: (spread[v], ARM_VARIANTS.index(v))) if spread else "v7"
        platform = Platform("linux", arch.oci, variant)
        counts = Counter(str(f.platform) for f in self.files.values())
        dispatched: list[tuple[bytes, ElfFile]] = []
        disagree: list[tuple[bytes, ElfFile]] = []
        for path in sorted(self.files):
            file = self.files[path]
            if is_dispatched(path):
                dispatched.append((path, file))
            elif not _compatible(file, platform) or (file.arch is arch and file.bits != bits):
                disagree.append((path, file))
        return PlatformEvidence(
            platform,
            decided_by,
            tuple(core),
            tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            tuple(dispatched[:LISTED]),
            len(dispatched),
            tuple(disagree[:LISTED]),
            len(disagree),
        )
