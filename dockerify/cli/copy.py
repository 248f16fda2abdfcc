"""`dockerify copy SOURCE DESTINATION`: an image or a whole index between any two stores."""

from __future__ import annotations

import argparse
import logging

from dockerify import sdk
from dockerify.cli.options import common, json_flag, print_result

log = logging.getLogger("dockerify")


def cmd_copy(args: argparse.Namespace) -> int:
    result = sdk.copy(args.source, args.destination, platforms=args.platform or (), quiet=args.quiet)
    log.info(
        "copied %s to %s (%d blobs copied, %d already there)",
        args.source,
        args.destination,
        result.blobs_copied,
        result.blobs_skipped,
    )
    print_result(result, args, result.root.digest, pretty=True)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    json_flag(c, "the copied root, manifests and counts")
    common(c)
    c.set_defaults(func=cmd_copy)
