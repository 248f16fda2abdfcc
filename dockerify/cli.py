"""The `dockerify` command line: argument parsing and user-facing errors only."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dockerify.chunking import DEFAULT_LAYERS, MAX_LAYERS, MIN_LAYERS
from dockerify.errors import DockerifyError
from dockerify.oci.refs import ImageRef

if TYPE_CHECKING:
    from dockerify.sources.options import ReadOptions

log = logging.getLogger("dockerify")
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS else ""
    try:
        return int(float(t[: len(t) - len(unit)]) * _SIZE_UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 512M, 4G)") from None


def parse_command(text: str) -> tuple[str, ...]:
    """A JSON array (exec form) or a shell-style string."""
    if text.strip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid JSON array {text!r}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON array of strings")
        return tuple(value)
    return tuple(shlex.split(text))


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


# ---------------------------------------------------------------- commands


def default_compression(output: ImageRef) -> str:
    # The daemon unpacks every layer it loads; compressing for it only costs time.
    return "none" if output.transport == "docker-daemon" else "gzip"


def cmd_build(args: argparse.Namespace) -> int:
    from dockerify.build import BuildOptions, build
    from dockerify.oci.image import ImageOptions
    from dockerify.oci.refs import parse_ref
    from dockerify.platform import Platform

    sources: list[tuple[Platform | None, str]] = []
    for item in args.sources:
        plat, sep, path = item.partition("=")
        if sep and "/" in plat and not os.path.exists(item):
            sources.append((Platform.parse(plat), path))
        else:
            sources.append((Platform.parse(args.platform) if args.platform else None, item))
    if args.platform and len(sources) > 1:
        raise DockerifyError("--platform applies to a single source; write several as PLATFORM=SOURCE")
    name = args.tag or "pi:latest"
    output = parse_ref(args.output) if args.output else parse_ref(f"docker-daemon:{name}")
    image = ImageOptions(
        env=tuple(args.env),
        labels=tuple(args.label),
        cmd=args.cmd,
        entrypoint=args.entrypoint,
        workdir=args.workdir or "",
        user=args.user or "",
        expose=tuple(args.expose),
    )
    opts = BuildOptions(
        image=image,
        compression=args.compression or default_compression(output),
        epoch=BuildOptions.epoch_from_env(),
        pi_fixups=not args.no_pi_fixups,
        force=args.force,
        max_size=args.max_size,
        read=_read_options(args),
        quiet=args.quiet,
        sparse=not args.dense and output.transport not in ("docker-daemon", "docker-archive"),
        chunked=args.chunked,
    )
    result = build(sources, output, name, opts)
    if args.json:
        print(
            json.dumps(
                {
                    "digest": result.digest,
                    "manifests": [{"platform": p, "digest": d} for p, d in result.manifests],
                }
            )
        )
    else:
        print(result.digest)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from dockerify.inspect import inspect_target, render

    info = inspect_target(
        args.target, platform=args.platform, max_size=args.max_size, read=_read_options(args)
    )
    print(json.dumps(info, indent=2, sort_keys=True) if args.json else render(info))
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from dockerify.oci.copy import copy
    from dockerify.platform import Platform
    from dockerify.progress import Progress
    from dockerify.transports import open_store

    platforms = [Platform.parse(p) for p in args.platform or []]
    with open_store(args.source) as src, open_store(args.destination) as dst:
        result = copy(src, dst, platforms=platforms, progress=Progress(quiet=args.quiet))
    logging.getLogger("dockerify").info(
        "copied %s to %s (%d blobs copied, %d already there)",
        args.source,
        args.destination,
        result.blobs_copied,
        result.blobs_skipped,
    )
    if args.json:
        info = {
            "digest": result.root.digest,
            "mediaType": result.root.media_type,
            "manifests": [d.digest for d in result.manifests],
            "blobs_copied": result.blobs_copied,
            "blobs_skipped": result.blobs_skipped,
            "bytes_copied": result.bytes_copied,
        }
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(result.root.digest)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from dockerify.diff import compare, records
    from dockerify.platform import Platform
    from dockerify.trees import open_tree

    plat = Platform.parse(args.platform) if args.platform else None
    read = _read_options(args)
    with open_tree(args.a, platform=plat, max_size=args.max_size, read=read) as a:
        ra = records(a.entries())
    with open_tree(args.b, platform=plat, max_size=args.max_size, read=read) as b:
        rb = records(b.entries())
    lines = compare(ra, rb)
    for line in lines:
        print(line)
    if not lines and not args.quiet:
        print(f"no differences ({len(ra)} entries)", file=sys.stderr)
    return 1 if lines else 0


# ---------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    p.add_argument("--debug", action="store_true", help="tracebacks and tool command lines")
    p.add_argument(
        "--max-size",
        type=parse_size,
        default=64 << 30,
        metavar="SIZE",
        help="largest decompressed input accepted (default 64G)",
    )


def _source_reading(p: argparse.ArgumentParser) -> None:
    """Options of commands that read disk images (build, inspect, diff)."""
    p.add_argument(
        "--no-journal",
        action="store_true",
        help="read an ext3/ext4 filesystem that needs recovery as it is on disk, without replaying its journal",
    )
    p.add_argument(
        "--ignore-checksums",
        action="store_true",
        help="read ext4 metadata whose metadata_csum checksum is wrong (one warning per kind)",
    )


def _read_options(args: argparse.Namespace) -> ReadOptions:
    from dockerify.sources.options import ReadOptions

    return ReadOptions(journal=not args.no_journal, verify_checksums=not args.ignore_checksums)


def _layer_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of layers") from None
    if not MIN_LAYERS <= n <= MAX_LAYERS:
        raise argparse.ArgumentTypeError(f"--chunked takes {MIN_LAYERS} to {MAX_LAYERS} layers, not {n}")
    return n


def _bare_chunked(argv: list[str]) -> list[str]:
    """`--chunked` alone means the default count: argparse's optional value would otherwise take
    the next word (the source) as N. `--chunked=N` passes through."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command != "build":
        return argv
    return [f"--chunked={DEFAULT_LAYERS}" if a == "--chunked" else a for a in argv]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockerify", description="Bootable OS images <-> multi-platform OCI images"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="disk images, tarballs or directories -> an OCI image")
    b.add_argument("sources", nargs="+", metavar="[PLATFORM=]SOURCE")
    b.add_argument("-t", "--tag", help="image name NAME[:TAG] (default pi:latest)")
    b.add_argument(
        "-o",
        "--output",
        help="oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME or REGISTRY/REPO:TAG (default docker-daemon:NAME)",
    )
    b.add_argument(
        "--platform", help="os/arch[/variant]; overrides detection (a contradiction needs --force)"
    )
    b.add_argument("--force", action="store_true", help="accept a --platform that contradicts the content")
    b.add_argument(
        "--compression",
        choices=("gzip", "zstd", "none"),
        help="layer compression (default gzip; none for docker-daemon:, which stores layers uncompressed)",
    )
    b.add_argument("--env", action="append", default=[], metavar="K=V")
    b.add_argument("--label", action="append", default=[], type=_key_value, metavar="K=V")
    b.add_argument("--cmd", type=parse_command)
    b.add_argument("--entrypoint", type=parse_command)
    b.add_argument("--workdir")
    b.add_argument("--user")
    b.add_argument("--expose", action="append", default=[], metavar="PORT[/PROTO]")
    b.add_argument(
        "--dense",
        action="store_true",
        help="write files with holes in full (Docker outputs always do: its layer store cannot keep sparse members)",
    )
    b.add_argument(
        "--chunked",
        dest="chunked",
        type=_layer_count,
        metavar="N",
        help=f"--chunked[=N]: split the tree into at most N layers by dpkg package (default "
        f"{DEFAULT_LAYERS}), so an updated card shares the layers of unchanged packages",
    )
    b.add_argument("--no-pi-fixups", action="store_true", help="keep /etc/ld.so.preload untouched")
    b.add_argument("--json", action="store_true")
    _source_reading(b)
    _common(b)
    b.set_defaults(func=cmd_build)

    i = sub.add_parser(
        "inspect", help="partitions, filesystems and platform of a source, or an image's index and config"
    )
    i.add_argument("target", metavar="SOURCE|IMAGE")
    i.add_argument("--platform")
    i.add_argument("--json", action="store_true")
    _source_reading(i)
    _common(i)
    i.set_defaults(func=cmd_inspect)

    d = sub.add_parser("diff", help="compare two trees (disk image, tarball, directory, image)")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--platform", help="the platform to compare when an image holds several")
    _source_reading(d)
    _common(d)
    d.set_defaults(func=cmd_diff)

    c = sub.add_parser("copy", help="copy an image or a whole index between any two image references")
    c.add_argument(
        "source",
        metavar="SOURCE",
        help="oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE, docker-daemon:NAME or REGISTRY/REPO:TAG",
    )
    c.add_argument("destination", metavar="DESTINATION", help="any of the forms SOURCE takes")
    c.add_argument(
        "--platform", action="append", help="copy only this platform of an index (repeat for several)"
    )
    c.add_argument("--json", action="store_true", help="print the copied root, manifests and counts as JSON")
    _common(c)
    c.set_defaults(func=cmd_copy)

    for register in _EXTRA_COMMANDS:
        register(sub, _common)
    return parser


# Feature packages (export, registry, run) add their subcommands here, keeping this module thin.
_EXTRA_COMMANDS: list[
    Callable[[argparse._SubParsersAction, Callable[[argparse.ArgumentParser], None]], None]
] = []


def _load_extra_commands() -> None:
    import importlib

    for module in ("dockerify.runner", "dockerify.exporters.commands", "dockerify.registry.commands"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        _EXTRA_COMMANDS.append(mod.register)


def run_cli(argv: Sequence[str] | None, parser_factory: Callable[[], argparse.ArgumentParser]) -> int:
    _load_extra_commands()
    parser = parser_factory()
    args = parser.parse_args(_bare_chunked(sys.argv[1:] if argv is None else list(argv)))
    debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG
        if debug
        else (logging.WARNING if getattr(args, "quiet", False) else logging.INFO),
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except DockerifyError as e:
        if debug:
            traceback.print_exc()
        print(f"{parser.prog}: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if debug:
            traceback.print_exc()
        where = f"{e.filename}: " if e.filename else ""
        print(f"{parser.prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: say so plainly, details only with --debug
        if debug:
            traceback.print_exc()
        print(f"{parser.prog}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("hint: run again with --debug for a traceback, and report it", file=sys.stderr)
        return 70


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, build_parser)


def undockerify_main(argv: Sequence[str] | None = None) -> int:
    from dockerify.exporters.commands import undockerify_parser

    return run_cli(argv, undockerify_parser)


def pi_main(argv: Sequence[str] | None = None) -> int:
    from dockerify.runner import pi_parser

    return run_cli(argv, pi_parser)


if __name__ == "__main__":
    sys.exit(main())
