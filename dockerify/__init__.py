"""dockerify: bootable OS images <-> multi-platform OCI images.

The SDK mirrors the CLI, one function per command (dockerify/sdk.py): `build`, `inspect`,
`diff`, `export`, `copy`, `push`, `pull`, `push_artifact`, `pull_artifact`, `login`, `logout`,
`keygen`, `sign`, `verify`, `sbom`, `attest_sbom`, `verify_attestation`, `run`, `binfmt_status`,
each returning a frozen result (dockerify/results.py; `to_json()` is what the command's `--json`
prints) and raising DockerifyError (or a subclass) on failure.
`open_tree()` reads any tree (disk image, tarball, directory or image reference) as entries.
"""

from dockerify import sdk
from dockerify.build import BuildOptions
from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.exporters.export import ExportOptions
from dockerify.oci.image import ImageOptions
from dockerify.oci.refs import ImageRef, parse_ref
from dockerify.platform import Arch, Platform

# Every SDK function and result type, by sdk.__all__: a name added there is exported here with
# no edit. After the imports above, so `build` is the SDK's function, not the dockerify.build module.
from dockerify.sdk import *  # noqa: F403
from dockerify.sources.options import ReadOptions
from dockerify.trees import open_image, open_tree

__version__ = "0.1.0"

__all__ = [
    *sdk.__all__,
    "Arch",
    "BuildOptions",
    "CorruptInput",
    "DockerifyError",
    "Entry",
    "ExportOptions",
    "FileType",
    "ImageOptions",
    "ImageRef",
    "NotFound",
    "Platform",
    "ReadOptions",
    "open_image",
    "open_tree",
    "parse_ref",
]
