"""dockerify: bootable OS images <-> multi-platform OCI images.

The SDK mirrors the CLI, one function per command (dockerify/sdk.py): `build`, `inspect`,
`diff`, `export`, `copy`, `push`, `pull`, `keygen`, `sign`, `verify`, `run`, `binfmt_status`,
each returning a frozen result and raising DockerifyError (or a subclass) on failure.
`open_tree()` reads any tree (disk image, tarball, directory or image reference) as entries.
"""

from dockerify.build import BuildOptions, BuildResult
from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.exporters.export import ExportOptions
from dockerify.oci.image import ImageOptions
from dockerify.oci.refs import ImageRef, parse_ref
from dockerify.platform import Arch, Platform
from dockerify.sdk import (
    BinfmtResult,
    CopyResult,
    DiffResult,
    ExportResult,
    InspectResult,
    KeygenResult,
    PullResult,
    PushResult,
    RunResult,
    SignedDigest,
    SignResult,
    TransferCounts,
    VerifiedDigest,
    VerifyResult,
    binfmt_status,
    build,
    copy,
    diff,
    export,
    inspect,
    keygen,
    pull,
    push,
    run,
    sign,
    verify,
)
from dockerify.sources.options import ReadOptions
from dockerify.trees import open_image, open_tree

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "BinfmtResult",
    "BuildOptions",
    "BuildResult",
    "CopyResult",
    "CorruptInput",
    "DiffResult",
    "DockerifyError",
    "Entry",
    "ExportOptions",
    "ExportResult",
    "FileType",
    "ImageOptions",
    "ImageRef",
    "InspectResult",
    "KeygenResult",
    "NotFound",
    "Platform",
    "PullResult",
    "PushResult",
    "ReadOptions",
    "RunResult",
    "SignResult",
    "SignedDigest",
    "TransferCounts",
    "VerifiedDigest",
    "VerifyResult",
    "binfmt_status",
    "build",
    "copy",
    "diff",
    "export",
    "inspect",
    "keygen",
    "open_image",
    "open_tree",
    "parse_ref",
    "pull",
    "push",
    "run",
    "sign",
    "verify",
]
