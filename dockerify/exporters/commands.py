"""`dockerify export` and the seed's `undockerify`, registered with the CLI (see dockerify/cli.py)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import Any

from dockerify.errors import DockerifyError

log = logging.getLogger("dockerify")

FORMATS = ("rootfs-tar", "rootfs-dir", "sdcard", "initramfs", "stage0")

# Options that only mean something for some formats: given for another, they are an error rather
# than silently ignored.
_ONLY_FOR = {
    "disk_id": ("sdcard",),
    "boot_id": ("sdcard",),
    "root_uuid": ("sdcard",),
    "boot_label": ("sdcard",),
    "root_label": ("sdcard",),
    "boot_size": ("sdcard",),
    "root_size": ("sdcard",),
    "shrink": ("sdcard",),
    "push": ("sdcard",),
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
_EMPTY: dict[str, Any] = {"env": [], "shrink": False}


def _parse_size(text: str) -> int:
    from dockerify.cli import parse_size

    return parse_size(text)


def _parse_command(text: str) -> tuple[str, ...]:
    from dockerify.cli import parse_command

    return parse_command(text)


def _mib(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of MiB") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be positive")
    return value << 20


def _add_sdcard_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sdcard")
    g.add_argument("--disk-id", help="MBR disk id (0x1234abcd) or GPT disk GUID (default: the recorded one)")
    g.add_argument("--boot-id", help="FAT volume id of the boot partition, e.g. 5DF2A7C1 or 5DF2-A7C1")
    g.add_argument("--root-uuid", help="ext4 UUID of the root filesystem")
    g.add_argument("--boot-label", help="FAT label of the boot partition")
    g.add_argument("--root-label", help="ext4 label of the root filesystem")
    g.add_argument(
        "--boot-size",
        type=_parse_size,
        metavar="SIZE",
        help="boot partition size (default: the recorded one)",
    )
    g.add_argument(
        "--root-size",
        type=_parse_size,
        metavar="SIZE",
        help="root partition size (default: content + 20%% + 64 MiB)",
    )
    g.add_argument(
        "--shrink",
        action="store_true",
        help="the smallest root that fits, grown on first boot where the image has a hook for it",
    )


def _add_initramfs_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("initramfs and stage0")
    g.add_argument(
        "--entrypoint", type=_parse_command, help="replace the image's Entrypoint (JSON array or words)"
    )
    g.add_argument("--cmd", type=_parse_command, help="replace the image's Cmd (JSON array or words)")
    g.add_argument("--env", action="append", default=[], metavar="K=V", help="add or replace a variable")
    g.add_argument(
        "--memory",
        type=_parse_size,
        default=512 << 20,
        metavar="SIZE",
        help="guest memory the initramfs must fit in (half of it at most; default 512M)",
    )
    g.add_argument(
        "--init",
        metavar="FILE|image",
        help="the /init the kernel runs: a static init FILE instead of dockerify's (which runs "
        "Entrypoint + Cmd), or `image` for the image's own /init (default: dockerify's; the image's "
        "own /init is kept as /init.image)",
    )
    g.add_argument("--hostname", help="host name the init sets")
    s = p.add_argument_group("stage0")
    s.add_argument(
        "--kernel",
        metavar="FILE",
        help="kernel: vmlinuz/bzImage, Image(.gz) or vmlinux (default: the image's /boot)",
    )
    s.add_argument("--stage0", metavar="FILE", help="stage0 firmware for the run script's -bios (optional)")
    s.add_argument("--append", metavar="ARGS", help="extra kernel command line arguments")
    s.add_argument(
        "--accel", choices=("auto", "kvm", "tcg"), default=None, help="QEMU accelerator in the run script"
    )


def cmd_export(args: argparse.Namespace) -> int:
    _check_options(args)
    from dockerify.platform import Platform
    from dockerify.trees import open_image

    plat = Platform.parse(args.platform) if args.platform else None
    with open_image(args.image, plat, verify_key=args.verify_key, max_size=args.max_size) as image:
        result = export(image, args)
        if args.push:
            from dockerify.registry import push_artifact

            pushed = push_artifact(
                result["output"],
                args.push,
                platform=image.platform,
                annotations={"io.dockerify.source-image": image.descriptor.digest},
            )
            result["pushed"] = {"reference": args.push, "digest": pushed.digest}
            log.info("pushed %s to %s as %s", result["output"], args.push, pushed.digest)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(result["output"])
    return 0


def _check_options(args: argparse.Namespace) -> None:
    for option, formats in _ONLY_FOR.items():
        value = getattr(args, option, None)
        if value is None or value == _EMPTY.get(option, None):
            continue
        if args.format not in formats:
            flag = "--" + option.replace("_", "-")
            raise DockerifyError(
                f"{flag} applies to --format {' or '.join(formats)}, not {args.format}",
            )
    if args.compress and args.format in ("rootfs-dir", "stage0"):
        raise DockerifyError(f"--compress does not apply to --format {args.format} (a directory)")


def export(image: Any, args: argparse.Namespace, entries: Any = None) -> dict[str, Any]:
    """Write `image` (or `entries`, its tree from elsewhere: the frontend's stage rootfs) as
    `args.format`."""
    fmt = args.format
    if entries is None:
        from dockerify.oci.flatten import flatten

        max_size = args.max_size
        if fmt == "sdcard":
            # Re-readable: the SD card reads the tree twice (sizes, then the root filesystem).
            entries = lambda: flatten(image, restore_fixups=True, max_size=max_size)  # noqa: E731
        else:
            entries = flatten(image, restore_fixups=True, max_size=max_size)
    if fmt == "rootfs-tar":
        from dockerify.exporters.rootfs import write_rootfs_tar

        r = write_rootfs_tar(entries, args.output, args.compress)
        return {
            "output": r.path,
            "format": fmt,
            "entries": r.entries,
            "tar_size": r.tar_size,
            "warnings": r.warnings,
        }
    if fmt == "rootfs-dir":
        from dockerify.exporters.rootfs import write_rootfs_dir

        d = write_rootfs_dir(entries, args.output)
        return {"output": d.path, "format": fmt, "entries": d.entries, "warnings": d.warnings}
    if fmt == "initramfs":
        from dockerify.exporters.initramfs import write_initramfs

        i = write_initramfs(image, entries, args.output, initramfs_options(args))
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
    if fmt == "sdcard":
        from dockerify.exporters.sdcard import CardOptions, write_sdcard

        c = write_sdcard(
            image,
            entries,
            args.output,
            CardOptions(
                disk_id=args.disk_id,
                boot_id=args.boot_id,
                root_uuid=args.root_uuid,
                boot_label=args.boot_label,
                root_label=args.root_label,
                boot_size=args.boot_size,
                root_size=args.root_size,
                shrink=args.shrink,
                compression=args.compress,
            ),
        )
        return {"output": c.path, "format": fmt, **c.summary()}
    if fmt == "stage0":
        from dockerify.exporters.stage0 import Stage0Options, write_stage0

        b = write_stage0(
            image,
            entries,
            args.output,
            Stage0Options(
                initramfs=initramfs_options(args),
                kernel=args.kernel,
                stage0=args.stage0,
                append=args.append or "",
                accel=args.accel or "auto",
            ),
        )
        return {"output": b.path, "format": fmt, **b.summary()}
    raise DockerifyError(f"unknown format {fmt!r}", hint="one of " + ", ".join(FORMATS))


def initramfs_options(args: argparse.Namespace) -> Any:
    from dockerify.exporters.initramfs import InitramfsOptions

    compression = args.compress
    if compression is None:
        from dockerify.exporters.common import compression_for

        compression = compression_for(args.output, None) if args.format == "initramfs" else "gzip"
        if args.format == "initramfs" and compression == "none" and not args.output.endswith(".cpio"):
            compression = "gzip"  # the usual initramfs: gzip unless the name says otherwise
    return InitramfsOptions(
        compression=compression,
        memory=args.memory,
        entrypoint=args.entrypoint,
        cmd=args.cmd,
        env=tuple(args.env),
        init=args.init,
        hostname=args.hostname,
    )


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    e = sub.add_parser(
        "export",
        help="an image -> rootfs tarball or directory, SD card, initramfs or stage0 bundle",
        description="Write one platform of an image as a root filesystem tarball or directory, a "
        "Raspberry Pi style SD-card image, an initramfs with an init, or a QEMU/stage0 boot bundle.",
    )
    e.add_argument(
        "image",
        metavar="IMAGE",
        help="oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME or REGISTRY/REPO:TAG "
        "(pulled, digests verified, into a temporary store that is removed)",
    )
    e.add_argument("--format", "-f", required=True, choices=FORMATS)
    e.add_argument("-o", "--output", required=True, metavar="OUT", help="output file or directory")
    e.add_argument("--platform", help="os/arch[/variant] when the image holds several")
    e.add_argument(
        "--verify-key",
        metavar="KEY.pub",
        help="refuse the image unless its cosign-format signature verifies with this public key",
    )
    e.add_argument("--push", metavar="REF", help="push the SD-card image to a registry as an OCI artifact")
    e.add_argument(
        "--compress",
        choices=("gzip", "xz", "zstd", "none"),
        help="compress the output (default: by the output name's suffix; initramfs: gzip)",
    )
    e.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    _add_sdcard_options(e)
    _add_initramfs_options(e)
    common(e)
    e.set_defaults(func=cmd_export)


# ---------------------------------------------------------------- undockerify


def cmd_undockerify(args: argparse.Namespace) -> int:
    from dockerify.oci.refs import TRANSPORTS
    from dockerify.platform import Platform
    from dockerify.trees import open_image

    ref = args.image
    if ref.split(":", 1)[0] not in TRANSPORTS:
        ref = f"docker-daemon:{ref}"  # the seed took a Docker image name or id
    if (args.boot_mib is None) != (args.root_mib is None):
        raise DockerifyError("give both BOOT_MIB and ROOT_MIB, or neither (automatic sizes)")
    output = args.output or _default_card_name(args.image)
    ns = argparse.Namespace(
        format="sdcard",
        output=output,
        compress=args.compress,
        disk_id=args.label,
        boot_id=args.boot_id,
        root_uuid=args.root_uuid,
        boot_label=None,
        root_label=None,
        boot_size=args.boot_mib,
        root_size=args.root_mib,
        shrink=args.shrink,
        max_size=args.max_size,
    )
    plat = Platform.parse(args.platform) if args.platform else None
    with open_image(ref, plat, max_size=args.max_size) as image:
        result = export(image, ns)
    print(result["output"])
    return 0


def _default_card_name(image: str) -> str:
    name = (
        image.split(":", 1)[1]
        if image.split(":", 1)[0] in ("docker-daemon", "oci", "oci-archive", "docker-archive")
        else image
    )
    name = name.rstrip("/").rsplit("/", 1)[-1] or "card"
    return name.replace(":", "-") + ".img"


def undockerify_parser() -> argparse.ArgumentParser:
    from dockerify.cli import _common

    p = argparse.ArgumentParser(
        prog="undockerify",
        description="Write a Raspberry Pi SD-card image from a container image (the seed's undockerify, "
        "as a front of `dockerify export --format sdcard`). Without sizes, they are computed.",
    )
    p.add_argument("--label", metavar="DISKID", help="MBR disk id (default: the recorded one)")
    p.add_argument("--boot-id", metavar="ID", help="FAT volume id of the boot partition")
    p.add_argument("--root-uuid", metavar="UUID", help="ext4 UUID of the root filesystem")
    p.add_argument("-o", "--output", help="output file (default: NAME-TAG.img in the current directory)")
    p.add_argument("--platform", help="os/arch[/variant] when the image holds several")
    p.add_argument("--compress", choices=("gzip", "xz", "zstd", "none"))
    p.add_argument("--shrink", action="store_true", help="the smallest root that fits")
    p.add_argument("image", metavar="IMAGE", help="Docker image name, or any IMAGE reference dockerify reads")
    p.add_argument("boot_mib", metavar="BOOT_MIB", type=_mib, nargs="?")
    p.add_argument("root_mib", metavar="ROOT_MIB", type=_mib, nargs="?")
    _common(p)
    p.set_defaults(func=cmd_undockerify)
    return p
