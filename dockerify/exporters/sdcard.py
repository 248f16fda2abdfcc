"""`--format sdcard`: a Raspberry Pi style card image from an image's layers.

MBR (or GPT, when that is what the builder recorded), a FAT32 boot partition at 4 MiB (sector
8192) and the ext4 root right after it. The disk layout the builder recorded in the image config
(label `io.dockerify.disk-layout`) is restored: disk id, partition types and PARTUUIDs, FAT volume
id and label, ext4 UUID, label and features, and where the boot partition is mounted. Ids changed
on the command line are rewritten where the tree refers to them (cmdline.txt `root=`, /etc/fstab)
and nowhere else.

Everything happens in userspace on files. The entries are read twice when the caller can give
them anew (`EntrySource`): first for the sizes (only the boot partition's files are staged, the
root's usage is counted from the entries), then to write the root straight into the card:
mke2fs makes the empty filesystem at its offset and ext4populate.py lays out inodes, extents,
directories and file data itself. Otherwise (entries read once, ext2/3, inline_data, bigalloc...)
the whole tree is staged into a scratch directory and `mke2fs -d` reads it back, under fakeroot
when unprivileged (ext4img.py). The FAT is made by mkfs.vfat and filled by mtools at its offset,
the partition table by sfdisk. The card is sparse; it is written under a temporary name and renamed at
the end, or compressed into place."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from dockerify.entry import Entry, FileType
from dockerify.errors import DockerifyError
from dockerify.exporters.common import (
    Warnings,
    atomic_file,
    compress_file,
    compression_for,
    display,
    remove_tree,
    run_config,
    scratch_dir,
)
from dockerify.exporters.ext4img import (
    Ext4Spec,
    NoRoom,
    RootUsage,
    Staging,
    direct_unsupported,
    make_ext4,
    make_ext4_direct,
    measure_tree,
    min_inodes,
    round_mib,
    size_estimate,
)
from dockerify.exporters.ext4populate import Unsupported
from dockerify.exporters.ext4times import settle_ctimes
from dockerify.exporters.fatimg import FatSpec, check_names, cluster_for, make_fat, needed_size
from dockerify.exporters.sink import EntrySource, Result
from dockerify.oci.select import Image
from dockerify.run import check_tool, run
from dockerify.sources.disk import parse_fstab
from dockerify.sources.disklayout import BARE, LAYOUT_LABEL, DiskLayout, ExtRecord, FatRecord, PartitionRecord

log = logging.getLogger("dockerify")

MiB = 1 << 20
SECTOR = 512
BOOT_START = 4 * MiB  # sector 8192, as Raspberry Pi OS
ROOT_HEADROOM = 64 * MiB  # plus 20% of the content
BOOT_HEADROOM = 16 * MiB  # plus 20%, when the recorded size is too small
GPT_TAIL = MiB  # room for the backup GPT
ID_NAMESPACE = uuid.UUID("0b6b9c1e-7a53-5b7e-9d0e-3f2b1c4d5e6f")
FIRSTBOOT_HOOKS = (
    "usr/lib/raspberrypi-sys-mods/firstboot",  # Raspberry Pi OS Bookworm
    "usr/lib/raspi-config/init_resize.sh",  # earlier releases
)


@dataclass(frozen=True)
class CardOptions:
    """`--format sdcard`'s options: ids, labels and sizes that replace the recorded ones."""

    disk_id: str | None = None
    boot_id: str | None = None
    root_uuid: str | None = None
    boot_label: str | None = None
    root_label: str | None = None
    boot_size: int | None = None
    root_size: int | None = None
    shrink: bool = False
    compress: str | None = None  # None: by the output name's suffix


@dataclass(frozen=True)
class CardResult(Result):
    FORMAT: ClassVar[str] = "sdcard"
    path: str
    table: str
    disk_id: str
    partitions: tuple[dict[str, Any], ...]
    boot: dict[str, Any]
    root: dict[str, Any]
    rewritten: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.path,
            "format": self.FORMAT,
            "table": self.table,
            "disk_id": self.disk_id,
            "partitions": [dict(p) for p in self.partitions],
            "boot": dict(self.boot),
            "root": dict(self.root),
            "rewritten": list(self.rewritten),
            "warnings": list(self.warnings),
            "size": self.size,
        }


class SdCard:
    name = CardResult.FORMAT
    options = CardOptions
    directory = False

    def write(self, image: Image, entries: EntrySource, output: str, options: CardOptions) -> CardResult:
        return write_sdcard(image, entries, output, options)


# ---------------------------------------------------------------- ids


def _hex_id(text: str, digits: int, what: str) -> str:
    t = text.strip().lower().removeprefix("0x").replace("-", "")
    if len(t) != digits or any(c not in "0123456789abcdef" for c in t):
        raise DockerifyError(
            f"{what} {text!r} is not {digits} hex digits", hint="e.g. 0x1234abcd / 5DF2-A7C1"
        )
    return t


def parse_disk_id(text: str, table: str) -> str:
    if table == "gpt":
        try:
            return str(uuid.UUID(text))
        except ValueError:
            raise DockerifyError(f"--disk-id {text!r} is not a GUID (the recorded table is GPT)") from None
    return "0x" + _hex_id(text, 8, "--disk-id")


def parse_uuid(text: str, what: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise DockerifyError(f"{what} {text!r} is not a UUID") from None


def fat_uuid(volume_id: str) -> str:
    """The FAT volume id as blkid and fstab write it: XXXX-XXXX."""
    return f"{volume_id[:4]}-{volume_id[4:]}".upper()


# ---------------------------------------------------------------- the plan


@dataclass
class Plan:
    table: str
    disk_id: str
    boot_part: PartitionRecord
    root_part: PartitionRecord
    mount: str  # "" until decided (no recorded layout)
    fat: dict[str, Any]
    ext: dict[str, Any]
    recorded: bool
    old: dict[str, str]  # kind -> recorded value, for the rewrites
    new: dict[str, str]
    extra_parts: list[PartitionRecord]


def _derived(image: Image, what: str) -> uuid.UUID:
    return uuid.uuid5(ID_NAMESPACE, f"{image.descriptor.digest}/{what}")


def make_plan(image: Image, opts: CardOptions, warnings: Warnings) -> Plan:
    raw = image.labels.get(LAYOUT_LABEL)
    where = f"{image.name or image.descriptor.digest}: label {LAYOUT_LABEL}"
    layout = DiskLayout.from_json(raw, where) if raw else None
    bare_ext: dict[str, Any] = {}
    if layout is not None and layout.table_type == BARE:
        # A bare filesystem image has no card layout to keep: the Raspberry Pi one is used, with
        # the recorded ext filesystem's UUID, label and features for the root.
        fs = layout.partitions[0].fs if layout.partitions else None
        bare_ext = fs.to_json() if isinstance(fs, ExtRecord) else {}
        layout = None
    if layout is not None:
        parts = layout.partitions
        root = next((p for p in parts if p.mountpoint == "/"), None)
        boot = next((p for p in parts if isinstance(p.fs, FatRecord)), None)
        if root is None or boot is None:
            raise DockerifyError(
                f"{LAYOUT_LABEL}: the recorded layout has no FAT boot and ext root partition",
                hint="an SD card needs both; export --format rootfs-tar instead",
            )
        extra = [p for p in parts if p is not root and p is not boot]
        table, disk_id, mount = layout.table_type, layout.disk_id, boot.mountpoint or "/boot"
        if table not in ("dos", "gpt"):
            raise DockerifyError(f"{LAYOUT_LABEL}: unknown partition table type {table!r}")
        fat = boot.fs.to_json() if boot.fs is not None else {}
        ext = root.fs.to_json() if root.fs is not None else {}
        recorded = True
    else:
        why = "built from a bare filesystem image" if bare_ext else "no disk layout recorded"
        warnings.add(
            f"{why} (the image was not built from a partitioned disk image); a Raspberry Pi "
            "layout with ids derived from the image digest is used",
            image.descriptor.digest[:19],
        )
        ident = _derived(image, "disk").hex
        table, disk_id, mount = "dos", "0x" + ident[:8], ""
        boot = PartitionRecord(1, BOOT_START, 0, "0c", "", "", False, None, "")
        root = PartitionRecord(2, 0, 0, "83", "", "", False, None, "/")
        fat = {"type": "fat32", "label": "bootfs", "volume_id": _derived(image, "boot").hex[:8].upper()}
        ext = {"type": "ext4", "label": "rootfs", "uuid": str(_derived(image, "root")), **bare_ext}
        extra = []
        recorded = False
    if ext.get("type") not in ("ext2", "ext3", "ext4"):
        raise DockerifyError(f"{LAYOUT_LABEL}: root filesystem type {ext.get('type')!r} is not ext2/3/4")
    old = {
        "disk_id": disk_id,
        "boot_partuuid": boot.partuuid,
        "root_partuuid": root.partuuid,
        "boot_uuid": fat_uuid(fat.get("volume_id", "00000000")),
        "root_uuid": ext.get("uuid", ""),
        "boot_label": fat.get("label", ""),
        "root_label": ext.get("label", ""),
    }
    new = dict(old)
    if opts.disk_id:
        disk_id = parse_disk_id(opts.disk_id, table)
        new["disk_id"] = disk_id
    if table == "dos":
        short = disk_id.removeprefix("0x")
        new["boot_partuuid"] = f"{short}-{boot.number:02d}"
        new["root_partuuid"] = f"{short}-{root.number:02d}"
    if opts.boot_id:
        fat["volume_id"] = _hex_id(opts.boot_id, 8, "--boot-id").upper()
        new["boot_uuid"] = fat_uuid(fat["volume_id"])
    if opts.root_uuid:
        ext["uuid"] = parse_uuid(opts.root_uuid, "--root-uuid")
        new["root_uuid"] = ext["uuid"]
    if opts.boot_label is not None:
        if len(opts.boot_label.encode()) > 11:
            raise DockerifyError(f"--boot-label {opts.boot_label!r} is longer than FAT's 11 characters")
        fat["label"] = opts.boot_label
        new["boot_label"] = opts.boot_label
    if opts.root_label is not None:
        if len(opts.root_label.encode()) > 16:
            raise DockerifyError(f"--root-label {opts.root_label!r} is longer than ext4's 16 bytes")
        ext["label"] = opts.root_label
        new["root_label"] = opts.root_label
    return Plan(table, disk_id, boot, root, mount, fat, ext, recorded, old, new, extra)


# ---------------------------------------------------------------- rewrites

_REF = re.compile(rb"\b(PARTUUID|UUID|LABEL)=(\"?)([^\s\",]+)")


def rewrite_refs(data: bytes, plan: Plan) -> bytes:
    """Replace references to changed ids (PARTUUID=, UUID=, LABEL=) and nothing else."""
    pairs: dict[tuple[bytes, bytes], bytes] = {}
    for key, kind in (
        (b"PARTUUID", "boot_partuuid"),
        (b"PARTUUID", "root_partuuid"),
        (b"UUID", "boot_uuid"),
        (b"UUID", "root_uuid"),
        (b"LABEL", "boot_label"),
        (b"LABEL", "root_label"),
    ):
        old, new = plan.old[kind], plan.new[kind]
        if old and new and old != new:
            fold = old.lower() if key != b"LABEL" else old
            pairs[(key, fold.encode())] = new.encode()

    def sub(m: re.Match[bytes]) -> bytes:
        key, quote, value = m.group(1), m.group(2), m.group(3)
        lookup = value if key == b"LABEL" else value.lower()
        replacement = pairs.get((key, lookup))
        if replacement is None:
            return m.group(0)
        return key + b"=" + quote + replacement

    return _REF.sub(sub, data) if pairs else data


# ---------------------------------------------------------------- staging


_FAT_FILE_MODES = (0o755, 0o555)


@dataclass
class _BootMeta:
    type: FileType
    mode: int
    uid: int
    gid: int
    mtime: int
    xattrs: bool


def _decide_mount(fstab: bytes | None) -> str:
    """Where the boot partition is mounted when nothing was recorded: where the image's own
    /etc/fstab mounts a FAT filesystem, else /boot (the convention the builder reads a card by)."""
    if fstab:
        for _device, mountpoint, fstype in parse_fstab(fstab.decode(errors="replace")):
            if fstype in ("vfat", "msdos", "fat") and mountpoint.startswith("/") and mountpoint != "/":
                return mountpoint
    return "/boot"


def _fat_warnings(meta: dict[bytes, _BootMeta], prefix: bytes, warnings: Warnings) -> list[str]:
    read_only = []
    for path, m in meta.items():
        if not path.startswith(prefix):
            continue
        shown = display(path)
        if m.type is FileType.HARDLINK:
            warnings.add("FAT has no hard links; each name gets its own copy", shown)
            continue
        if m.type in (FileType.CHAR, FileType.BLOCK, FileType.SOCKET):
            warnings.add("FAT holds only files and directories, left out", shown)
            continue
        if m.type not in (FileType.REG, FileType.DIR):
            continue  # symlinks and FIFOs: check_names says so
        if (m.uid, m.gid) != (0, 0):
            warnings.add("FAT has no owners (files are root's)", f"{shown} ({m.uid}:{m.gid})")
        perm = m.mode & 0o7777
        if m.type is FileType.REG and perm & 0o222 == 0:
            read_only.append(path[len(prefix) :].decode("utf-8", "surrogateescape"))
        if perm not in (_FAT_FILE_MODES if m.type is FileType.REG else (0o755,)):
            warnings.add("FAT keeps no permissions beyond read-only", f"{shown} ({perm:04o})")
        if m.xattrs:
            warnings.add("FAT has no extended attributes, dropped", shown)
        if m.mtime % 2 or m.mtime < 315_532_800:
            warnings.add("FAT keeps mtimes from 1980 on, to 2 seconds", shown)
    return read_only


def _boot_mtimes(boot_dir: Path, meta: dict[bytes, _BootMeta], prefix: bytes) -> None:
    """The boot files' mtimes (the fakeroot helper does the root's), directories last, deepest
    first, for mcopy -m to carry over."""
    base = os.fsencode(boot_dir)
    found = [(p, m) for p, m in meta.items() if p.startswith(prefix)]
    found.sort(key=lambda pm: (pm[1].type is FileType.DIR, -pm[0].count(b"/")))
    for path, m in found:
        full = os.path.join(base, path[len(prefix) :])
        if os.path.lexists(full):
            ns = max(m.mtime, 0) * 1_000_000_000
            os.utime(full, ns=(ns, ns), follow_symlinks=False)


def _add_firstboot_hook(has: Callable[[bytes], bool], boot_dir: Path, warnings: Warnings) -> str | None:
    hook = next((h for h in FIRSTBOOT_HOOKS if has(h.encode())), None)
    cmdline = boot_dir / "cmdline.txt"
    if hook is None or not cmdline.is_file():
        warnings.add(
            "--shrink: no first-boot expansion hook in the image; grow the root partition by hand "
            "(raspi-config --expand-rootfs, or growpart + resize2fs)",
            "/" + (FIRSTBOOT_HOOKS[0]),
        )
        return None
    st = cmdline.stat()
    text = cmdline.read_bytes()
    if re.search(rb"(^|\s)init=", text):
        return None
    first, nl, rest = text.partition(b"\n")
    cmdline.write_bytes(first.rstrip() + b" init=/" + hook.encode() + nl + rest)
    os.utime(cmdline, ns=(st.st_atime_ns, st.st_mtime_ns))
    return "/" + hook


# ---------------------------------------------------------------- the card


def _sfdisk_script(plan: Plan, boot: tuple[int, int], root: tuple[int, int]) -> str:
    lines = [f"label: {plan.table}", f"label-id: {plan.disk_id}", "unit: sectors", "sector-size: 512", ""]
    for part, (start, size) in ((plan.boot_part, boot), (plan.root_part, root)):
        line = f"start={start // SECTOR}, size={size // SECTOR}, type={part.type}"
        if plan.table == "gpt":
            line += f", uuid={part.partuuid}"
            if part.name:
                line += f', name="{part.name}"'
        elif part.bootable:
            line += ", bootable"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _root_sizes(plan: Plan, opts: CardOptions, needed: int) -> tuple[list[int], str]:
    if opts.root_size is not None:
        size = round_mib(opts.root_size)
        if size < needed:
            raise DockerifyError(
                f"the root filesystem needs at least {needed >> 20} MiB; --root-size {opts.root_size >> 20} MiB "
                "is too small",
                hint=f"give --root-size {needed >> 20}M or more, or --shrink for the smallest that fits",
            )
        return [size], "given"
    if opts.shrink:
        return [needed, *(round_mib(needed + needed * p // 100) for p in (3, 6, 10, 20))], "shrunk"
    size = round_mib(needed + needed // 5 + ROOT_HEADROOM)
    return [size, round_mib(size + size // 10)], "content + 20% + 64 MiB"


def write_sdcard(image: Image, entries: EntrySource, output: str, opts: CardOptions) -> CardResult:
    """Write the card. With re-readable `entries` the root filesystem is written directly into
    the card (ext4populate.py); otherwise, or for a layout that writer does not handle (ext2/3,
    inline_data, bigalloc, ...), the tree is staged and `mke2fs -d` reads it back."""
    for tool in ("mke2fs", "dumpe2fs", "mkfs.vfat", "mcopy", "mattrib", "sfdisk"):
        check_tool(tool)
    kind = compression_for(output, opts.compress)
    out_dir = Path(output).resolve().parent
    if not out_dir.is_dir():
        raise DockerifyError(f"{output}: directory {out_dir} does not exist")
    if callable(entries):
        try:
            return _write(image, entries, output, opts, kind, direct=True)
        except Unsupported as e:
            log.debug("%s: root filesystem: staged tree and mke2fs -d (the direct writer: %s)", output, e)
        once: Iterable[Entry] = entries()
    else:
        log.debug("%s: root filesystem: staged tree and mke2fs -d (the entries can be read once)", output)
        once = entries
    if os.geteuid() != 0:
        check_tool("fakeroot")
    return _write(image, lambda: once, output, opts, kind, direct=False)


def _under(path: bytes, prefixes: tuple[bytes, ...]) -> bool:
    return path.startswith(prefixes) or path + b"/" in prefixes


def _write(
    image: Image,
    entries: Callable[[], Iterable[Entry]],
    output: str,
    opts: CardOptions,
    kind: str,
    direct: bool,
) -> CardResult:
    warnings = Warnings(output)
    plan = make_plan(image, opts, warnings)
    rc = run_config(image)
    epoch = rc.created
    newest = 0  # the newest mtime: the filesystems' times when the image records no creation time
    spec = Ext4Spec(
        fs_type=plan.ext.get("type", "ext4"),
        features=tuple(plan.ext["features"]) if plan.ext.get("features") else None,
        block_size=int(plan.ext.get("block_size") or 4096),
        inode_size=int(plan.ext.get("inode_size") or 256),
        label=plan.ext.get("label", "rootfs"),
        uuid=plan.ext["uuid"],
    )
    features = set(spec.features or ())
    if direct:
        why = direct_unsupported(spec)
        if why:
            raise Unsupported(why)
    with scratch_dir("dockerify-card-") as scratch:
        staged = scratch / "root"
        plan_path = scratch / "plan"
        cmdline_paths = (
            {plan.mount.strip("/").encode() + b"/cmdline.txt"}
            if plan.mount
            else {b"boot/cmdline.txt", b"boot/firmware/cmdline.txt"}
        )
        # Where the boot partition's files are, as far as known before reading the tree; the
        # direct path stages only those (and counts the rest), the staging path everything.
        guess = plan.mount or "/boot"
        while True:
            staged.mkdir(mode=0o700)
            stage_only: tuple[bytes, ...] | None = None
            if direct:
                candidates: tuple[bytes, ...] = (guess.strip("/").encode() + b"/",)
                stage_only = candidates
            else:
                candidates = (plan.mount.strip("/").encode() + b"/",) if plan.mount else (b"",)
            meta: dict[bytes, _BootMeta] = {}
            fstab: bytes | None = None
            rewritten: list[str] = []
            present: set[bytes] = set()
            counted = None
            if direct:
                # Blocks as the scratch filesystem would allocate a staged sparse file's.
                fsb = os.statvfs(scratch).f_bsize
                counted = RootUsage(spec.block_size, "inline_data" in features, candidates[0], fsb)
            hooks = {h.encode() for h in FIRSTBOOT_HOOKS}
            with (
                open(plan_path, "wb") as plan_file,
                contextlib.closing(Staging(staged, plan_file, warnings)) as staging,
            ):
                for entry in entries():
                    newest = max(newest, entry.mtime)
                    content = None
                    if entry.path in cmdline_paths or entry.path == b"etc/fstab":
                        if entry.type is FileType.REG and entry.size <= 1 << 20:
                            data = entry.read_all()
                            if entry.path == b"etc/fstab":
                                fstab = data
                            content = rewrite_refs(data, plan)
                            if content != data:
                                rewritten.append(display(entry.path))
                    if _under(entry.path, candidates):
                        meta[entry.path] = _BootMeta(
                            entry.type, entry.mode, entry.uid, entry.gid, entry.mtime, bool(entry.xattrs)
                        )
                    if entry.path in hooks:
                        present.add(entry.path)
                    if counted is not None:
                        if entry.type is FileType.DIR:
                            present.add(entry.path)
                        counted.add(entry, len(content) if content is not None else entry.size)
                    if stage_only is None or _under(entry.path, stage_only):
                        staging.add(entry, content)
                mount = plan.mount or _decide_mount(fstab)
                mount_rel = mount.strip("/").encode()
                staging.sync()  # all written: the tree can be looked at
                missing = []

                def exists(
                    p: bytes, present: set[bytes] = present, direct: bool = counted is not None
                ) -> bool:
                    return p in present if direct else os.path.isdir(staging.full(p))

                if not exists(mount_rel):
                    # The mount point must exist on the root filesystem even when the image lacks it.
                    parts = mount_rel.split(b"/")
                    for i in range(1, len(parts) + 1):
                        p = b"/".join(parts[:i])
                        if not exists(p):
                            d = Entry(path=p, type=FileType.DIR, mode=0o755, mtime=epoch)
                            missing.append(d)
                            staging.add(d)
                            if counted is not None:
                                counted.add(d, 0)
                staging.flush()
                staging.sync()
            if stage_only is None or _under(mount_rel, stage_only) or mount_rel + b"/" == stage_only[0]:
                break
            # /etc/fstab puts the boot partition elsewhere: read the tree again, staging that.
            remove_tree(staged)
            guess = mount
        if plan.old["root_uuid"] != plan.new["root_uuid"] or plan.old["disk_id"] != plan.new["disk_id"]:
            if not rewritten and plan.recorded:
                warnings.add("changed ids are referenced by neither /etc/fstab nor cmdline.txt", mount)
        prefix = mount_rel + b"/"
        boot_dir = scratch / "boot"
        mount_full = staging.full(mount_rel)
        os.rename(mount_full, boot_dir)
        os.mkdir(mount_full, 0o700)
        read_only = _fat_warnings(meta, prefix, warnings)
        check_names(boot_dir, warnings, mount)

        def has_hook(h: bytes) -> bool:
            if counted is not None:
                return h in present
            full = staged / os.fsdecode(h)
            return full.exists() or full.is_symlink()

        hook = _add_firstboot_hook(has_hook, boot_dir, warnings) if opts.shrink else None
        _boot_mtimes(boot_dir, meta, prefix)

        # ---- sizes (all decided before the output is touched)
        boot_need, cluster = needed_size(boot_dir, plan.fat.get("cluster_size"))
        recorded_boot = plan.boot_part.size
        if opts.boot_size is not None:
            boot_size = round_mib(opts.boot_size)
            if boot_size < boot_need:
                raise DockerifyError(
                    f"the boot partition needs at least {boot_need >> 20} MiB; --boot-size "
                    f"{opts.boot_size >> 20} MiB is too small",
                    hint=f"give --boot-size {boot_need >> 20}M or more",
                )
        elif recorded_boot >= boot_need:
            boot_size = round_mib(recorded_boot)
        else:
            boot_size = round_mib(boot_need + boot_need // 5 + BOOT_HEADROOM)
        if not plan.fat.get("cluster_size"):
            cluster = cluster_for(boot_size)
        spec = replace(spec, epoch=epoch or newest or 1)  # never "now": the same image, the same card
        if counted is not None:
            usage = counted.usage(prefix)
        else:
            usage = measure_tree(
                staged,
                spec.block_size,
                "inline_data" in features,
                sum(1 for p in staging.big_xattrs if not p.startswith(prefix)),
            )
        needed = size_estimate(spec, usage, scratch)
        sizes, how = _root_sizes(plan, opts, needed)
        inodes = min_inodes(usage)
        if not opts.shrink:
            by_ratio = sizes[0] // 16384
            if (by_ratio - inodes) * spec.inode_size <= (sizes[0] - needed) // 2:
                inodes = max(inodes, by_ratio)
        log.info(
            "%s: boot %d MiB (needs %d MiB), root %d MiB (%s; needs %d MiB)",
            output,
            boot_size >> 20,
            boot_need >> 20,
            sizes[0] >> 20,
            how,
            needed >> 20,
        )

        # ---- the card
        boot_start = BOOT_START
        root_start = boot_start + boot_size
        tail = GPT_TAIL if plan.table == "gpt" else 0
        with atomic_file(output) as final:
            raw = final if kind == "none" else final.with_name(final.name + ".raw")
            try:
                with open(raw, "wb") as f:
                    f.truncate(root_start + sizes[0] + tail)
                make_fat(
                    FatSpec(plan.fat["volume_id"], plan.fat.get("label", ""), cluster, boot_start // SECTOR),
                    boot_dir,
                    raw,
                    boot_start,
                    boot_size,
                    read_only,
                )
                remove_tree(boot_dir)
                try:
                    if counted is not None:
                        remove_tree(staged)

                        def root_entries() -> Iterator[tuple[Entry, bytes | None]]:
                            for d in missing:  # before their children, which only the boot has
                                yield d, None
                            for entry in entries():
                                if entry.path.startswith(prefix):
                                    continue
                                content = None
                                if entry.path in cmdline_paths or entry.path == b"etc/fstab":
                                    if entry.type is FileType.REG and entry.size <= 1 << 20:
                                        content = rewrite_refs(entry.read_all(), plan)
                                yield entry, content

                        ext = make_ext4_direct(spec, raw, root_start, sizes, inodes, root_entries)
                        log.debug("%s: root filesystem: written directly, no staging tree", output)
                    else:
                        ext = make_ext4(spec, staged, plan_path, raw, root_start, sizes, inodes, (prefix,))
                except NoRoom:
                    raise DockerifyError(
                        f"the root filesystem did not fit in {sizes[-1] >> 20} MiB (estimated need {needed >> 20} MiB)",
                        hint="give a larger --root-size",
                    ) from None
                settle_ctimes(raw, root_start)  # the staging tree's ctimes must not reach the card
                if ext.attempts > 1 and not opts.shrink:
                    warnings.add(
                        "the size estimate was short; the root was made larger", f"{ext.size >> 20} MiB"
                    )
                remove_tree(staged)
                total = root_start + ext.size + tail
                with open(raw, "r+b") as g:
                    g.truncate(total)
                run(
                    [
                        "sfdisk",
                        "-q",
                        "--no-reread",
                        "--no-tell-kernel",
                        "--wipe",
                        "never",
                        "--wipe-partitions",
                        "never",
                        str(raw),
                    ],
                    input=_sfdisk_script(plan, (boot_start, boot_size), (root_start, ext.size)).encode(),
                )
                if kind != "none":
                    compress_file(raw, final, kind)
            finally:
                if raw != final:
                    raw.unlink(missing_ok=True)
            size = final.stat().st_size
    for part in plan.extra_parts:
        warnings.add(
            "partitions other than boot and root are not recreated", f"partition {part.number} ({part.type})"
        )
    partitions = []
    for part, start, psize in (
        (plan.boot_part, boot_start, boot_size),
        (plan.root_part, root_start, ext.size),
    ):
        partuuid = part.partuuid
        if plan.table == "dos":
            partuuid = f"{plan.disk_id.removeprefix('0x')}-{part.number:02d}"
        partitions.append(
            {"number": part.number, "start": start, "size": psize, "type": part.type, "partuuid": partuuid}
        )
    result = CardResult(
        output,
        plan.table,
        plan.disk_id,
        tuple(partitions),
        {
            "volume_id": plan.fat["volume_id"],
            "label": plan.fat.get("label", ""),
            "size": boot_size,
            "needed": boot_need,
            "cluster_size": cluster,
            "mountpoint": mount,
        },
        {
            "uuid": spec.uuid,
            "label": spec.label,
            "type": spec.fs_type,
            "features": list(spec.features) if spec.features is not None else None,
            "size": ext.size,
            "needed": needed,
            "sizing": how,
            "inodes": inodes,
            "firstboot_hook": hook,
        },
        tuple(rewritten),
        tuple(warnings.report()),
        size,
    )
    for path in rewritten:
        log.info("%s: rewrote references to the changed ids in %s", output, path)
    return result


__all__ = ["CardOptions", "CardResult", "EntrySource", "SdCard", "write_sdcard", "rewrite_refs"]
