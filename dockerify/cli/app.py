"""The parser of each program, the options every command shares, and user-facing errors.

A parser is built afresh on every call, so `main()` can run many times in one process."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Callable, Sequence

from dockerify import __version__
from dockerify.cli import export, images, registry, run
from dockerify.cli.options import bare_chunked
from dockerify.errors import DockerifyError

log = logging.getLogger("dockerify")

ParserFactory = Callable[[], argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockerify", description="Bootable OS images <-> multi-platform OCI images"
    )
    parser.add_argument("--version", action="version", version=f"dockerify {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (images.register, run.register, export.register, registry.register):
        register(sub)
    return parser


def run_cli(argv: Sequence[str] | None, parser_factory: ParserFactory) -> int:
    parser = parser_factory()
    args = parser.parse_args(bare_chunked(sys.argv[1:] if argv is None else list(argv)))
    debug = getattr(args, "debug", False)
    _configure_logging(debug, getattr(args, "quiet", False))
    try:
        return int(args.func(args))
    except DockerifyError as e:
        if debug:
            traceback.print_exc()
        print(f"{parser.prog}: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `dockerify inspect X | head`: the reader has what it wanted
        sys.stderr.close()
        return 141
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


def _configure_logging(debug: bool, quiet: bool) -> None:
    """-q keeps warnings and errors only; --debug shows everything. Set on every call (not
    `basicConfig`, which only acts once per process) so repeated `main()` calls each get theirs."""
    logger = logging.getLogger("dockerify")
    logger.setLevel(logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO))
    if not any(getattr(h, "_dockerify_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the sys.stderr of the moment (tests and callers may swap it between calls)."""

    _dockerify_cli = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, build_parser)


def undockerify_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, export.undockerify_parser)


def pi_main(argv: Sequence[str] | None = None) -> int:
    return run_cli(argv, run.pi_parser)


if __name__ == "__main__":
    sys.exit(main())
