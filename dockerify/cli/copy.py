"""`dockerify copy SOURCE DESTINATION`: an image or a whole index between any two stores."""

from __future__ import annotations

import argparse
import json
import logging

from dockerify.cli.options import common, json_flag
from dockerify.oci.copy import copy
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.stores import open_store

log = logging.getLogger("dockerify")


def cmd_copy(args: argparse.Namespace) -> int:
    platforms = [Platform.parse(p) for p in args.platform or []]
    with open_store(args.source) as src, open_store(args.destination) as dst:
        result = copy(src, dst, platforms=platforms, progress=Progress(quiet=args.quiet))
    log.info(
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
