"""Flag types and option groups several commands share."""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Callable
from typing import Any

from dockerify.chunking import DEFAULT_LAYERS, MAX_LAYERS, MIN_LAYERS
from dockerify.jsonable import Result
from dockerify.sources import DEFAULT_MAX_SIZE
from dockerify.sources.options import ReadOptions

Common = Callable[[argparse.ArgumentParser], None]

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _SIZE_UNITS else ""
    try:
        return int(float(t[: len(t) - len(unit)]) * _SIZE_UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (e.g. 512M, 4G)") from None


def parse_command(text: str) -> tuple[str, ...]:
    """A JSON array (exec form) or words split as a shell splits them: quotes group, but no shell
    runs it (`a && b` is three words); for shell syntax write `sh -c '...'` or a JSON array."""
    if text.strip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid JSON array {text!r}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a JSON array of strings")
        return tuple(value)
    return tuple(shlex.split(text))


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def mib(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of MiB") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be positive")
    return value << 20


def layer_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of layers") from None
    if not MIN_LAYERS <= n <= MAX_LAYERS:
        raise argparse.ArgumentTypeError(f"--chunked takes {MIN_LAYERS} to {MAX_LAYERS} layers, not {n}")
    return n


def bare_chunked(argv: list[str]) -> list[str]:
    """`--chunked` alone means the default count: argparse's optional value would otherwise take
    the next word (the source) as N. `--chunked=N` passes through."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command != "build":
        return argv
    return [f"--chunked={DEFAULT_LAYERS}" if a == "--chunked" else a for a in argv]


def common(p: argparse.ArgumentParser) -> None:
    """-q and --debug, on every command."""
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars, info messages or summaries on stderr; warnings and errors still show",
    )
    p.add_argument("--debug", action="store_true", help="tracebacks and tool command lines")


def max_size(p: argparse.ArgumentParser) -> None:
    """--max-size, on the commands that decompress input."""
    p.add_argument(
        "--max-size",
        type=parse_size,
        default=DEFAULT_MAX_SIZE,
        metavar="SIZE",
        help="largest decompressed input accepted (default 64G)",
    )


def json_flag(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def source_reading(p: argparse.ArgumentParser) -> None:
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


def read_options(args: argparse.Namespace) -> ReadOptions:
    return ReadOptions(journal=not args.no_journal, verify_checksums=not args.ignore_checksums)


def print_result(
    result: Result, args: argparse.Namespace, text: str | None = None, pretty: bool = False
) -> None:
    """The command's result on stdout: `result.to_json()` with --json, else `text` (if any)."""
    if getattr(args, "json", False):
        print(result.dumps(pretty))
    elif text is not None:
        print(text)


def platform_flag(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--platform", help=text)


def registry_flags(p: argparse.ArgumentParser) -> None:
    """--insecure, --ca-cert and --authfile, on the commands that talk to a registry."""
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain HTTP and unverified TLS for any registry (loopback registries may use HTTP anyway)",
    )
    p.add_argument("--ca-cert", metavar="FILE", help="CA certificate(s) to verify the registry's TLS with")
    authfile_flag(p)


def authfile_flag(p: argparse.ArgumentParser, verb: str | None = None) -> None:
    if verb is None:
        text = (
            "registry login file (auth.json or config.json) to search first, as skopeo's --authfile "
            "(default: $REGISTRY_AUTH_FILE, then Podman's and Docker's usual files)"
        )
    else:
        text = (
            f"{verb} FILE (auth.json or config.json), as skopeo's --authfile "
            "(default: $REGISTRY_AUTH_FILE, else Docker's config.json)"
        )
    p.add_argument("--authfile", metavar="FILE", help=text)


def chunk_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-size", type=parse_size, metavar="SIZE", help="upload chunk size (default 128M)")


def registry_options(args: argparse.Namespace) -> dict[str, Any]:
    """The registry flags as the SDK's keywords (`insecure`, `ca_cert`, `authfile`)."""
    return {
        "insecure": True if getattr(args, "insecure", False) else None,
        "ca_cert": getattr(args, "ca_cert", None),
        "authfile": getattr(args, "authfile", None),
    }
