"""`dockerify run`, `dockerify binfmt` and the seed's `pi`."""

from __future__ import annotations

import argparse
import logging
import sys

from dockerify import daemon, sdk
from dockerify.cli.options import common, json_flag, platform_flag, print_result
from dockerify.runner import interactive_shell

log = logging.getLogger("dockerify")

BINFMT_HINT = "apt-get install qemu-user-static binfmt-support; update-binfmts --enable qemu-aarch64"


def cmd_run(args: argparse.Namespace) -> int:
    as_json = getattr(args, "json", False)
    result = sdk.run(
        args.image,
        args.command,
        workdir=args.workdir,
        platform=args.platform,
        verify_key=args.verify_key,
        rm=not args.no_rm,
        interactive=not args.no_interactive,
        tty=False if as_json else None,  # with --json the output goes into the JSON, not to a terminal
    )
    if as_json:
        print(result.dumps())
        return result.exit_code
    # Without a TTY the output comes back captured: show it as the command wrote it.
    if result.output:
        sys.stdout.write(result.output if result.output.endswith("\n") else result.output + "\n")
    if result.errors:
        sys.stderr.write(result.errors)
    return result.exit_code


def cmd_binfmt(args: argparse.Namespace) -> int:
    result = sdk.binfmt_status()
    text = "\n".join(f"{arch:8} {'enabled' if on else 'missing'}" for arch, on in result.handlers.items())
    print_result(result, args, text or None)
    if not result.ok:
        print(f"hint: {BINFMT_HINT}", file=sys.stderr)
        return 1
    return 0


def _run_args(p: argparse.ArgumentParser, default_image: str | None) -> None:
    p.add_argument("--no-rm", "--keep", dest="no_rm", action="store_true", help="keep the container")
    p.add_argument("--no-interactive", action="store_true", help="no stdin (and no TTY) for the container")
    p.add_argument("--workdir", help="working directory (default /mnt/host, the current directory)")
    platform_flag(p, "override the image's own platform")
    p.add_argument(
        "--verify-key",
        metavar="KEY.pub",
        help="run only if IMAGE (a registry or oci: reference) carries a signature this key verifies",
    )
    if default_image:
        p.add_argument(
            "image",
            nargs="?",
            default=default_image,
            help=f"NAME[:TAG] in the daemon, or any image (default {default_image})",
        )
    else:
        p.add_argument(
            "image",
            metavar="IMAGE",
            help="NAME[:TAG] in the daemon, or any image (loaded into the daemon first)",
        )
    p.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and arguments to run in it"
    )


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    r = sub.add_parser("run", help="run an image from the daemon with the current directory at /mnt/host")
    json_flag(r, "the image, platform, exit status and the command's output (no TTY)")
    _run_args(r, None)
    common(r)
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("binfmt", help="show whether foreign architectures can run here (qemu-user)")
    json_flag(b, "the handlers found")
    common(b)
    b.set_defaults(func=cmd_binfmt)


def pi_parser() -> argparse.ArgumentParser:
    """`pi [--no-rm] [--no-interactive] [IMAGE] [CMD...]`, as in the seed (default pi:latest, bash;
    /bin/sh, with a note, for an image without bash)."""
    p = argparse.ArgumentParser(
        prog="pi", description="run a Raspberry Pi OS image with the current directory at /mnt/host"
    )
    _run_args(p, "pi:latest")
    common(p)

    def run(args: argparse.Namespace) -> int:
        daemon.cli()
        # what runs (and is looked into for a shell) is what was verified
        args.image = sdk.daemon_image(args.image, args.verify_key, args.platform)
        args.verify_key = None
        if not args.command:
            args.command, note = interactive_shell(args.image, args.platform)
            if note:
                log.warning("pi: %s", note)
        return cmd_run(args)

    p.set_defaults(func=run)
    return p
