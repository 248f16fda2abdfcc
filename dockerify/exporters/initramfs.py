"""`--format initramfs`: an image as a newc cpio the Linux kernel unpacks into RAM, with an /init
that runs the image's command and powers off (see init/init.c).

The cpio is written straight from the image's layers. The init is a small static program built
reproducibly per architecture by scripts/build-init.sh and committed as package data (its digests
in init/SHA256SUMS), so every install carries it and exporting needs neither a compiler nor the
network, and images without a shell (FROM scratch) boot too. Its settings
(command, Env, WorkingDir, user) go to /dockerify-init.conf. The user is resolved here, from the
image's own /etc/passwd and /etc/group, so the init needs no name service.

Ours is /init, which the kernel runs by default, so the archive boots into the image's Entrypoint +
Cmd with no kernel argument whatever the image holds there. An /init of the image's own (an
openlinux-style `/init -> /bin/busybox`, s6-overlay's /init) is kept as /init.image (the result's
`image_init`); a command naming /init runs /init.image instead. `--init image` keeps the image's
own /init where it is and boots it (ours, when there is a command, waits at /dockerify-init for
`rdinit=/dockerify-init`); `--init FILE` puts a custom static init at /init.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dockerify.entry import Entry, FileType, bytes_reader, file_entry
from dockerify.errors import DockerifyError, NotFound
from dockerify.exporters.common import (
    RunConfig,
    Warnings,
    atomic_file,
    command_line,
    compress_file,
    compression_for,
    display,
    run_config,
)
from dockerify.exporters.cpio import CpioStats, CpioWriter
from dockerify.exporters.sink import EntrySource, Result, read_once
from dockerify.oci.select import Image
from dockerify.paths import require_file
from dockerify.platform import Platform

log = logging.getLogger("dockerify")

INIT_DIR = Path(__file__).resolve().parent / "init"
CONF_PATH = b"dockerify-init.conf"
ALT_INIT = b"dockerify-init"
IMAGE_INIT = b"init.image"  # where the image's own /init is kept when ours takes its place
IMAGE = "image"  # `--init image`: boot the image's own /init
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_MEMORY = 512 << 20
CAPTURE = {b"etc/passwd", b"etc/group"}
CONSOLE = (5, 1)

#: ELF e_machine of each OCI architecture the init is built for.
ELF_MACHINE = {"amd64": 62, "arm64": 183, "arm": 40}


@dataclass(frozen=True)
class InitramfsOptions:
    compression: str = "gzip"
    memory: int = DEFAULT_MEMORY
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    init: str | None = None  # an init binary to use instead of ours, or IMAGE for the image's own
    hostname: str | None = None
    net: str | None = None  # "IF ADDR/PREFIX [GATEWAY]" for the init to configure


@dataclass(frozen=True)
class BootOptions:
    """What the init boots, for `--format initramfs` and `--format stage0` alike."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    memory: int = DEFAULT_MEMORY
    init: str | None = None
    hostname: str | None = None

    def initramfs(self, compression: str) -> InitramfsOptions:
        return InitramfsOptions(
            compression=compression,
            memory=self.memory,
            entrypoint=self.entrypoint,
            cmd=self.cmd,
            env=self.env,
            init=self.init,
            hostname=self.hostname,
        )


@dataclass(frozen=True)
class InitramfsFormatOptions(BootOptions):
    """`--format initramfs`'s options."""

    compress: str | None = None  # None: by the output name's suffix, gzip unless it ends in .cpio


@dataclass(frozen=True)
class InitramfsResult(Result):
    FORMAT: ClassVar[str] = "initramfs"
    path: str
    compression: str
    size: int  # of the output file
    cpio_size: int
    unpacked: int
    entries: int
    init_path: str  # what the kernel runs: "/init" (ours, a custom one or with --init image the image's)
    argv: tuple[str, ...]
    image_init: str | None = None  # where the image's own /init is in the archive, if it has one
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.path,
            "format": self.FORMAT,
            "compression": self.compression,
            "size": self.size,
            "unpacked": self.unpacked,
            "entries": self.entries,
            "init": self.init_path,
            "image_init": self.image_init,
            "argv": list(self.argv),
            "warnings": list(self.warnings),
        }


def initramfs_compression(output: str, compress: str | None) -> str:
    if compress is not None:
        return compress
    compression = compression_for(output, None)
    if compression == "none" and not output.endswith(".cpio"):
        return "gzip"  # the usual initramfs: gzip unless the name says otherwise
    return compression


class Initramfs:
    name = InitramfsResult.FORMAT
    options = InitramfsFormatOptions
    directory = False

    def write(
        self, image: Image, entries: EntrySource, output: str, options: InitramfsFormatOptions
    ) -> InitramfsResult:
        compression = initramfs_compression(output, options.compress)
        return write_initramfs(image, read_once(entries), output, options.initramfs(compression))


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


# ---------------------------------------------------------------- users


def _table(text: str | None) -> list[list[str]]:
    if not text:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(spec: str, passwd: str | None, group: str | None) -> User:
    """Docker's rules for the config's User: NAME, UID, NAME:GROUP, UID:GID (names looked up in
    the image's /etc/passwd and /etc/group; supplementary groups from /etc/group)."""
    users = [r for r in _table(passwd) if len(r) >= 7]
    groups = [r for r in _table(group) if len(r) >= 4]
    spec = spec.strip()
    if not spec:
        spec = "0"
    user_part, _, group_part = spec.partition(":")
    row = None
    if user_part.isdigit():
        uid = int(user_part)
        row = next((r for r in users if r[2] == user_part), None)
    else:
        row = next((r for r in users if r[0] == user_part), None)
        if row is None:
            raise DockerifyError(
                f"user {user_part!r} (the image's User) is not in the image's /etc/passwd",
                hint="give a numeric --user UID[:GID] when building, or add the user to the image",
            )
        uid = int(row[2])
    gid = int(row[3]) if row is not None and row[3].isdigit() else 0
    home = row[5] if row is not None and row[5] else "/"
    name = row[0] if row is not None else None
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            grow = next((g for g in groups if g[0] == group_part), None)
            if grow is None:
                raise DockerifyError(
                    f"group {group_part!r} (the image's User) is not in the image's /etc/group"
                )
            gid = int(grow[2])
    extra: list[int] = []
    if name is not None and not group_part:
        for g in groups:
            if name in g[3].split(",") and g[2].isdigit() and int(g[2]) != gid:
                extra.append(int(g[2]))
    return User(uid, gid, tuple(sorted(set(extra))), home)


# ---------------------------------------------------------------- init


def init_binary(platform: Platform, override: str | None) -> bytes:
    """Our static init for `platform`, or the one given with --init FILE."""
    if override and override != IMAGE:
        path = Path(override)
        require_file(path, f"--init {override}")
        data = path.read_bytes()
        _check_init(data, platform, str(path))
        return data
    arch = platform.architecture
    name = f"init-{arch}"
    if arch == "arm" and platform.variant in ("v5", "v6"):
        name = "init-armv6"
    path = INIT_DIR / name
    if arch not in ELF_MACHINE:
        raise DockerifyError(
            f"no initramfs init for {platform}", hint="give a static init for it with --init FILE"
        )
    if not path.is_file():
        hint = "the package ships it: reinstall dockerify (or rebuild it with scripts/build-init.sh)"
        if name == "init-armv6":
            hint = "the armhf init needs ARMv7; give an ARMv6 static init with --init FILE"
        raise NotFound(f"the initramfs init for {platform} is missing ({path})", hint=hint)
    return path.read_bytes()


def _check_init(data: bytes, platform: Platform, where: str) -> None:
    if data[:4] != b"\x7fELF":
        raise DockerifyError(f"{where}: not an ELF executable")
    little = data[5] == 1
    (machine,) = struct.unpack_from("<H" if little else ">H", data, 18)
    want = ELF_MACHINE.get(platform.architecture)
    if want is not None and machine != want:
        raise DockerifyError(f"{where}: built for ELF machine {machine}, but the image is {platform}")


def init_config(argv: list[str], env: list[str], workdir: str, user: User, opts: InitramfsOptions) -> bytes:
    items: list[tuple[str, str]] = [("arg", a) for a in argv]
    items += [("env", e) for e in env]
    items.append(("cwd", workdir or "/"))
    items += [("uid", str(user.uid)), ("gid", str(user.gid))]
    if user.groups:
        items.append(("groups", ",".join(map(str, user.groups))))
    if opts.hostname:
        items.append(("hostname", opts.hostname))
    if opts.net:
        items.append(("net", opts.net))
    out = [b"dockerify-init\0", b"1\0"]
    for key, value in items:
        raw = value.encode("utf-8", "surrogateescape")
        if b"\0" in raw:
            raise DockerifyError(f"the init's {key} {value!r} holds a NUL byte")
        out.append(key.encode() + b"\0" + raw + b"\0")
    return b"".join(out)


def environment(rc: RunConfig, extra: tuple[str, ...], user: User) -> list[str]:
    env: dict[str, str] = {}
    for item in (*rc.env, *extra):
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    out = [f"{k}={v}" for k, v in env.items()]
    if "PATH" not in env:
        out.insert(0, DEFAULT_PATH)
    if "HOME" not in env:
        out.append(f"HOME={user.home}")
    return out


# ---------------------------------------------------------------- the stream


class _Stream:
    """The image's entries made fit for the kernel's unpacker: parents before children, /dev/console
    a console, our files not shadowed; small files we need are captured on the way."""

    def __init__(self, warnings: Warnings, rename_init: bool) -> None:
        self.warnings = warnings
        self.rename_init = rename_init
        self.dirs: set[bytes] = {b"."}
        self.paths: set[bytes] = set()
        self.captured: dict[bytes, bytes] = {}
        self.has_init = False
        self.epoch = 0

    def _parents(self, path: bytes) -> Iterator[Entry]:
        parent = path.rpartition(b"/")[0] or b"."
        if parent in self.dirs:
            return
        yield from self._parents(parent)
        self.dirs.add(parent)
        # The real entry may come later (layers are applied in order); the kernel then updates it.
        yield Entry(path=parent, type=FileType.DIR, mode=0o755, mtime=self.epoch)

    def _move_init(self, entry: Entry) -> Entry | None:
        """The image's /init (and anything under it, or hard-linked to it) as /init.image."""
        path = entry.path
        if path == IMAGE_INIT or path.startswith(IMAGE_INIT + b"/"):
            self.warnings.add("replaced by the image's own /init", display(path))
            return None
        if path == b"init" or path.startswith(b"init/"):
            entry = entry.with_(path=IMAGE_INIT + path[4:])
        link = entry.linkname
        if entry.type is FileType.HARDLINK and (link == b"init" or link.startswith(b"init/")):
            entry = entry.with_(linkname=IMAGE_INIT + link[4:])
        return entry

    def filter(self, entries: Iterable[Entry]) -> Iterator[Entry]:
        for original in entries:
            path = original.path
            self.epoch = max(self.epoch, original.mtime)
            if path == CONF_PATH:
                self.warnings.add("replaced by the exporter's own", display(path))
                continue
            if path == b"init":
                self.has_init = True
            moved = self._move_init(original) if self.rename_init else original
            if moved is None:
                continue
            entry = moved
            path = entry.path
            if path == b"dev/console" and (
                entry.type is not FileType.CHAR or (entry.devmajor, entry.devminor) != CONSOLE
            ):
                self.warnings.add("replaced by the console device (5,1)", display(path))
                entry = Entry(
                    path=path, type=FileType.CHAR, mode=0o600, devmajor=5, devminor=1, mtime=entry.mtime
                )
            if path in CAPTURE and entry.type is FileType.REG and entry.size <= 1 << 20:
                data = entry.read_all()
                self.captured[path] = data
                entry = entry.with_(reader=bytes_reader(data), sparse=None)
            if path != b".":
                yield from self._parents(path)
            if entry.type is FileType.DIR:
                self.dirs.add(path)
            self.paths.add(path)
            yield entry

    def text(self, path: bytes) -> str | None:
        data = self.captured.get(path)
        return data.decode("utf-8", "replace") if data is not None else None


def write_initramfs(
    image: Image, entries: Iterable[Entry], output: str, opts: InitramfsOptions = InitramfsOptions()
) -> InitramfsResult:
    rc = run_config(image)
    argv = command_line(rc, opts.entrypoint, opts.cmd)
    boot_image_init = opts.init == IMAGE
    if not argv and not boot_image_init:
        raise DockerifyError(
            f"{output}: the image has no Entrypoint or Cmd, so the init would have nothing to run",
            hint='give one with --cmd \'["/path/to/program", "arg"]\' or --entrypoint, '
            "or boot the image's own /init with --init image",
        )
    init = init_binary(image.platform, opts.init) if argv else b""
    warnings = Warnings(output)
    stream = _Stream(warnings, rename_init=not boot_image_init)
    stats: CpioStats
    with atomic_file(output) as tmp:
        raw = tmp if opts.compression == "none" else tmp.with_name(tmp.name + ".cpio")
        try:
            with open(raw, "w+b") as f:
                writer = CpioWriter(f, warnings)
                for entry in stream.filter(entries):
                    writer.add(entry)
                if boot_image_init and not stream.has_init:
                    raise NotFound(
                        f"{output}: --init image, but the image has no /init",
                        hint="leave --init out to boot the image's Entrypoint + Cmd with dockerify's init",
                    )
                epoch = rc.created or stream.epoch
                extra = []
                if b"dev/console" not in stream.paths:
                    if b"dev" not in stream.dirs:
                        extra.append(Entry(path=b"dev", type=FileType.DIR, mode=0o755, mtime=epoch))
                    extra.append(
                        Entry(
                            path=b"dev/console",
                            type=FileType.CHAR,
                            mode=0o600,
                            devmajor=5,
                            devminor=1,
                            mtime=epoch,
                        )
                    )
                if argv:
                    if stream.has_init and not boot_image_init and argv[0] in ("/init", "init"):
                        argv = ["/" + IMAGE_INIT.decode(), *argv[1:]]  # the image's /init, moved
                    user = resolve_user(rc.user, stream.text(b"etc/passwd"), stream.text(b"etc/group"))
                    env = environment(rc, opts.env, user)
                    conf = init_config(argv, env, rc.workdir or "/", user, opts)
                    extra.append(file_entry(CONF_PATH, conf, mode=0o644, mtime=epoch))
                    ours = ALT_INIT if boot_image_init else b"init"
                    extra.append(file_entry(ours, init, mode=0o755, mtime=epoch))
                for entry in extra:
                    writer.add(entry)
                cpio_size = writer.finish()
                stats = writer.stats
            if raw != tmp:
                compress_file(raw, tmp, opts.compression, xz_check="crc32", fast=True)
        finally:
            if raw != tmp:
                raw.unlink(missing_ok=True)
        size = tmp.stat().st_size
    image_init = None
    if stream.has_init:
        image_init = "/init" if boot_image_init else "/" + IMAGE_INIT.decode()
        log.info("%s: the image's own /init is %s in the archive", output, image_init)
    if stats.unpacked > opts.memory // 2:
        log.warning(
            "warning: %s: unpacks to %d MiB, more than half of --memory %d MiB: the kernel may fail with "
            "'Initramfs unpacking failed: write error'; give the machine at least %d MiB",
            output,
            stats.unpacked >> 20,
            opts.memory >> 20,
            (2 * stats.unpacked >> 20) + 1,
        )
    return InitramfsResult(
        output,
        opts.compression,
        size,
        cpio_size,
        stats.unpacked,
        stats.entries,
        "/init",
        tuple(argv),
        image_init,
        tuple(warnings.report()),
    )
