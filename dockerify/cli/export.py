"""`dockerify export` and the seed's `undockerify`; `export_options()` reads EXPORT's flags for the
BuildKit frontend with the same parser."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from dockerify import sdk
from dockerify.cli.options import common, json_flag, max_size, mib, parse_command, parse_size, print_result
from dockerify.errors import DockerifyError
from dockerify.exporters import formats
from dockerify.exporters.export import ExportOptions
from dockerify.limits import DEFAULT_MAX_SIZE

log = logging.getLogger("dockerify")


def _format_options(args: argparse.Namespace) -> dict[str, Any]:
    """The formats' options the flags hold, by name (each flag's dest is its option's name)."""
    return {name: getattr(args, name) for name in formats.option_defaults() if hasattr(args, name)}


def cmd_export(args: argparse.Namespace) -> int:
    result = sdk.export(
        args.image,
        args.format,
        args.output,
        platform=args.platform,
        verify_key=args.verify_key,
        max_size=args.max_size,
        push=args.push,
        **_format_options(args),
    )
    if result.pushed is not None:
        log.info("pushed %s to %s as %s", result.output, result.pushed.reference, result.pushed.digest)
    print_result(result, args, result.output, pretty=True)
    return 0


def _add_sdcard_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sdcard")
    g.add_argument("--disk-id", help="MBR disk id (0x1234abcd) or GPT disk GUID (default: the recorded one)")
    g.add_argument("--boot-id", help="FAT volume id of the boot partition, e.g. 5DF2A7C1 or 5DF2-A7C1")
    g.add_argument("--root-uuid", help="ext4 UUID of the root filesystem")
    g.add_argument("--boot-label", help="FAT label of the boot partition")
    g.add_argument("--root-label", help="ext4 label of the root filesystem")
    g.add_argument(
        "--boot-size",
        type=parse_size,
        metavar="SIZE",
        help="boot partition size (default: the recorded one)",
    )
    g.add_argument(
        "--root-size",
        type=parse_size,
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
        "--entrypoint",
        type=parse_command,
        help="replace the image's Entrypoint (JSON array, or words split as a shell would; no shell runs them)",
    )
    g.add_argument(
        "--cmd", type=parse_command, help="replace the image's Cmd (JSON array or words, as --entrypoint)"
    )
    g.add_argument("--env", action="append", default=[], metavar="K=V", help="add or replace a variable")
    g.add_argument(
        "--memory",
        type=parse_size,
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


def _export_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "image",
        metavar="IMAGE",
        help="oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME or REGISTRY/REPO:TAG "
        "(pulled, digests verified, into a temporary store that is removed)",
    )
    p.add_argument("--format", "-f", required=True, choices=formats.names(), help="what to write")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file or directory")
    p.add_argument("--platform", help="os/arch[/variant] when the image holds several")
    p.add_argument(
        "--verify-key",
        metavar="KEY.pub",
        help="refuse the image unless its cosign-format signature verifies with this public key",
    )
    p.add_argument("--push", metavar="REF", help="push the SD-card image to a registry as an OCI artifact")
    p.add_argument(
        "--compress",
        choices=("gzip", "xz", "zstd", "none"),
        help="compress the output (default: by the output name's suffix; initramfs: gzip)",
    )
    json_flag(p, "a summary of what was written")
    _add_sdcard_options(p)
    _add_initramfs_options(p)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser(
        "export",
        help="an image -> rootfs tarball or directory, SD card, initramfs or stage0 bundle",
        description="Write one platform of an image as a root filesystem tarball or directory, a "
        "Raspberry Pi style SD-card image, an initramfs with an init, or a QEMU/stage0 boot bundle.",
    )
    _export_parser(e)
    max_size(e)
    common(e)
    e.set_defaults(func=cmd_export)


def export_options(fmt: str, output: str, flags: list[str]) -> ExportOptions:
    """The BuildKit frontend's `EXPORT --format F [flags]`: the flags read as `dockerify export`
    reads them, checked for the format; a bad flag is a DockerifyError, not an exit."""
    parser = argparse.ArgumentParser(prog="EXPORT", add_help=False, exit_on_error=False)
    _export_parser(parser)
    try:
        args = parser.parse_args(["-f", fmt, "-o", output, "docker-daemon:none", *flags])
    except (argparse.ArgumentError, SystemExit) as e:
        raise DockerifyError(f"EXPORT: {e}") from None
    if args.push and fmt != "sdcard":
        raise DockerifyError(f"--push applies to --format sdcard, not {fmt}")
    # EXPORT's flags have no --max-size: its tree is a directory, nothing is inflated.
    return ExportOptions.of(fmt, output, DEFAULT_MAX_SIZE, **_format_options(args))


# ---------------------------------------------------------------- undockerify


def cmd_undockerify(args: argparse.Namespace) -> int:
    if (args.boot_mib is None) != (args.root_mib is None):
        raise DockerifyError("give both BOOT_MIB and ROOT_MIB, or neither (automatic sizes)")
    # a bare NAME is the daemon's, as the seed had it (the one resolution rule of every command)
    result = sdk.export(
        args.image,
        "sdcard",
        args.output or _default_card_name(args.image),
        platform=args.platform,
        max_size=args.max_size,
        compress=args.compress,
        disk_id=args.label,
        boot_id=args.boot_id,
        root_uuid=args.root_uuid,
        boot_size=args.boot_mib,
        root_size=args.root_mib,
        shrink=args.shrink,
    )
    log.info("SD-card image written to %s", os.path.abspath(result.output))
    print(result.output)
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
    p.add_argument(
        "--compress", choices=("gzip", "xz", "zstd", "none"), help="compress the card (default: by suffix)"
    )
    p.add_argument("--shrink", action="store_true", help="the smallest root that fits")
    p.add_argument("image", metavar="IMAGE", help="Docker image name, or any IMAGE reference dockerify reads")
    p.add_argument(
        "boot_mib", metavar="BOOT_MIB", type=mib, nargs="?", help="boot partition size in MiB (with ROOT_MIB)"
    )
    p.add_argument(
        "root_mib", metavar="ROOT_MIB", type=mib, nargs="?", help="root partition size in MiB (with BOOT_MIB)"
    )
    max_size(p)
    common(p)
    p.set_defaults(func=cmd_undockerify)
    return p
