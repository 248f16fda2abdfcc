"""`dockerify build`, `inspect` and `diff`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from dockerify import sdk
from dockerify.chunking import DEFAULT_LAYERS
from dockerify.cli.options import (
    common,
    json_flag,
    key_value,
    layer_count,
    max_size,
    parse_command,
    platform_flag,
    print_result,
    read_options,
    source_reading,
)
from dockerify.errors import DockerifyError

log = logging.getLogger("dockerify")


def cmd_build(args: argparse.Namespace) -> int:
    sources: list[tuple[str | None, str]] = []
    for item in args.sources:
        plat, sep, path = item.partition("=")
        if sep and "/" in plat and not os.path.exists(item):
            sources.append((plat, path))
        else:
            sources.append((args.platform, item))
    if args.platform and len(sources) > 1:
        raise DockerifyError("--platform applies to a single source; write several as PLATFORM=SOURCE")
    result = sdk.build(
        sources,
        args.output,
        args.tag or "pi:latest",
        env=args.env,
        labels=args.label,
        cmd=args.cmd,
        entrypoint=args.entrypoint,
        workdir=args.workdir or "",
        user=args.user or "",
        expose=args.expose,
        compression=args.compression,
        pi_fixups=not args.no_pi_fixups,
        force=args.force,
        dense=args.dense,
        max_size=args.max_size,
        read=read_options(args),
        chunked=args.chunked,
        quiet=args.quiet,
    )
    default = "" if args.output else " (the default output; choose another with -t NAME or --output)"
    log.info("image written to %s: %s%s", result.output, result.digest, default)
    print_result(result, args, result.digest)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    result = sdk.inspect(args.target, platform=args.platform, max_size=args.max_size, read=read_options(args))
    print_result(result, args, result.text, pretty=True)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    result = sdk.diff(args.a, args.b, platform=args.platform, max_size=args.max_size, read=read_options(args))
    print_result(result, args, "\n".join(result.lines) if result.lines else None)
    if result.identical and not args.quiet:
        print(f"no differences ({result.entries[0]} entries)", file=sys.stderr)
    return 0 if result.identical else 1


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    b = sub.add_parser("build", help="disk images, tarballs or directories -> an OCI image")
    b.add_argument(
        "sources",
        nargs="+",
        metavar="[PLATFORM=]SOURCE",
        help="a disk image (.img, optionally compressed), rootfs tarball or directory; several, each "
        "as PLATFORM=SOURCE (e.g. linux/arm64=arm64.img), make a multi-platform image",
    )
    b.add_argument("-t", "--tag", help="image name NAME[:TAG] (default pi:latest)")
    b.add_argument(
        "-o",
        "--output",
        help="oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME or REGISTRY/REPO:TAG (default docker-daemon:NAME)",
    )
    platform_flag(b, "os/arch[/variant]; overrides detection (a contradiction needs --force)")
    b.add_argument("--force", action="store_true", help="accept a --platform that contradicts the content")
    b.add_argument(
        "--compression",
        choices=("gzip", "zstd", "none"),
        help="layer compression (default gzip; none for docker-daemon:, which stores layers uncompressed)",
    )
    b.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="set an environment variable (repeatable)"
    )
    b.add_argument(
        "--label",
        action="append",
        default=[],
        type=key_value,
        metavar="K=V",
        help="set an image label (repeatable)",
    )
    b.add_argument(
        "--cmd",
        type=parse_command,
        metavar="CMD",
        help="the image's Cmd: a JSON array, or words split as a shell would (no shell runs them: "
        "write `sh -c '...'` for && or pipes); default: the tree's bash or sh",
    )
    b.add_argument(
        "--entrypoint",
        type=parse_command,
        metavar="CMD",
        help="the image's Entrypoint, written as --cmd is (default: none)",
    )
    b.add_argument("--workdir", metavar="DIR", help="the image's working directory (default /)")
    b.add_argument("--user", metavar="USER[:GROUP]", help="the user the image runs as (default root)")
    b.add_argument(
        "--expose",
        action="append",
        default=[],
        metavar="PORT[/PROTO]",
        help="record an exposed port (repeatable)",
    )
    b.add_argument(
        "--dense",
        action="store_true",
        help="write files with holes in full (Docker outputs always do: its layer store cannot keep sparse members)",
    )
    b.add_argument(
        "--chunked",
        dest="chunked",
        type=layer_count,
        metavar="N",
        help=f"--chunked[=N]: split the tree into at most N layers by dpkg package (default "
        f"{DEFAULT_LAYERS}), so an updated card shares the layers of unchanged packages",
    )
    b.add_argument("--no-pi-fixups", action="store_true", help="keep /etc/ld.so.preload untouched")
    json_flag(b, "the digests")
    source_reading(b)
    max_size(b)
    common(b)
    b.set_defaults(func=cmd_build)

    i = sub.add_parser(
        "inspect", help="partitions, filesystems and platform of a source, or an image's index and config"
    )
    i.add_argument(
        "target",
        metavar="SOURCE|IMAGE",
        help="a disk image, tarball or directory, or an image reference (see README: how names are read)",
    )
    platform_flag(i, "the platform to show when an image holds several")
    json_flag(i, "everything found")
    source_reading(i)
    max_size(i)
    common(i)
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser(
        "diff",
        help="compare two trees (disk image, tarball, directory, image); exit status 1 if they differ",
    )
    d.add_argument("a", metavar="A", help="the first tree: a source or an image reference")
    d.add_argument("b", metavar="B", help="the second tree")
    platform_flag(d, "the platform to compare when an image holds several")
    json_flag(d, "the differences")
    source_reading(d)
    max_size(d)
    common(d)
    d.set_defaults(func=cmd_diff)
